"""The journeys engagement knows: what triggers each, its class, its defaults, sample data.

A journey's settings (enabled, delay, channel order, template, maximum lateness)
start from these defaults and the service settings; an operator can override
them over the API (``journey_config``). The sample context is what a template of
the journey may use: templates are validated against it on write, and previews
without a customer render with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from services.engagement.config import EngagementSettings

EMAIL: Final = "email"
SMS: Final = "sms"
PUSH: Final = "push"
CHAT: Final = "chat"
CHANNELS: Final = (EMAIL, SMS, PUSH, CHAT)
DEFAULT_ORDER: Final = (EMAIL, SMS)

THANK_YOU: Final = "thank_you"
AFTER_SALES: Final = "after_sales"
SURVEY_INVITATION: Final = "survey_invitation"
TIER_UP: Final = "tier_up"
MILESTONE_GIFT: Final = "milestone_gift"
POINTS_EXPIRING: Final = "points_expiring"
WIN_BACK: Final = "win_back"
SERVICE_RECOVERY: Final = "service_recovery"
SUPPORT_ALERT: Final = "support_alert"

_MONEY = {"amount": "42.50", "currency": "EUR"}


@dataclass(frozen=True, slots=True)
class Journey:
    name: str
    marketing: bool
    trigger: str
    description: str
    sample: dict[str, Any] = field(default_factory=dict)
    channels: tuple[str, ...] = DEFAULT_ORDER


JOURNEYS: Final = {
    j.name: j
    for j in (
        Journey(
            THANK_YOU,
            False,
            "purchase.completed",
            "right after a purchase: what they bought, recommendations",
            {
                "purchase_id": "p-1001",
                "total": _MONEY,
                "items": [{"name": "Green tea", "quantity": 2}],
                "recommendations": ["Lotus cake"],
                "bought_after": ["Jasmine tea"],
            },
        ),
        Journey(
            AFTER_SALES,
            False,
            "purchase.completed with a configured category",
            "a care reminder some days after the purchase; exits on a newer purchase of it",
            {"purchase_id": "p-1001", "categories": ["appliances"], "items": ["Rice cooker"]},
        ),
        Journey(
            SURVEY_INVITATION,
            False,
            "survey.invitation_created",
            "feedback's signed survey link; dropped once the link has expired",
            {
                "url": "https://survey.example/answer?token=sample",
                "expires_on": "2026-12-31",
                "reason": "after_purchase",
            },
        ),
        Journey(
            TIER_UP,
            True,
            "tier.changed (up)",
            "congratulations and the new benefits",
            {"new_tier": "gold", "benefits": ["free delivery"]},
        ),
        Journey(
            MILESTONE_GIFT,
            True,
            "reward.unlocked",
            "the gift and why",
            {"reward_name": "Free coffee", "reason": "10th visit"},
        ),
        Journey(
            POINTS_EXPIRING,
            False,
            "points.expiring",
            "how many points expire, and when",
            {"points": 120, "balance": 800, "expires_on": "2026-12-31"},
        ),
        Journey(
            WIN_BACK,
            True,
            "churn.risk_changed (entering high)",
            "a personal offer after a delay; exits on a purchase",
            {"risk": 0.82},
        ),
        Journey(
            SERVICE_RECOVERY,
            False,
            "response.recorded (detractor) or complaint.opened",
            "an apology; exits when the complaint is resolved",
            {"case_id": "case-1", "score": 2, "category": "delivery", "summary": "Late order"},
        ),
        Journey(
            SUPPORT_ALERT,
            False,
            "response.recorded (detractor) or complaint.opened",
            "an alert to the support team's address; exits when the complaint is resolved",
            {
                "customer_id": "c-1",
                "case_id": "case-1",
                "score": 2,
                "category": "delivery",
                "summary": "Late order",
                "severity": "medium",
                "comment": "It came a week late",
            },
            channels=(EMAIL,),
        ),
    )
}
MARKETING: Final = tuple(name for name, j in JOURNEYS.items() if j.marketing)


@dataclass(frozen=True, slots=True)
class Defaults:
    enabled: bool
    delay: timedelta
    channels: tuple[str, ...]
    template: str
    max_lateness: timedelta | None = None


def defaults(name: str, settings: EngagementSettings) -> Defaults:
    """A journey's settings before any operator change."""
    journey = JOURNEYS[name]
    delays = {
        WIN_BACK: settings.win_back_delay_seconds,
        AFTER_SALES: settings.after_sales_delay_seconds,
    }
    enabled = settings.thank_you_enabled if name == THANK_YOU else True
    return Defaults(
        enabled=enabled,
        delay=timedelta(seconds=delays.get(name, 0.0)),
        channels=journey.channels,
        template=name,
    )


def sample_context(name: str) -> dict[str, Any]:
    """The sample data for a template name: its journey's, or empty for an unknown one."""
    journey = JOURNEYS.get(name)
    return dict(journey.sample) if journey else {}
