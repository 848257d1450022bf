"""Expected failures, each with its HTTP status and a message a client can act on."""

from __future__ import annotations

from shared.http import AppError, Conflict, NotFound


class MemberNotFound(NotFound):
    code = "member_not_found"


class RewardNotFound(NotFound):
    code = "reward_not_found"


class RedemptionNotFound(NotFound):
    code = "redemption_not_found"


class InsufficientPoints(Conflict):
    code = "insufficient_points"


class RewardUnavailable(Conflict):
    code = "reward_unavailable"


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"


class ReferenceReused(Conflict):
    code = "reference_reused"


class RuleSetConflict(Conflict):
    code = "rule_set_conflict"


class RedemptionClosed(Conflict):
    code = "redemption_closed"
