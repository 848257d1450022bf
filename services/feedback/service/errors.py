"""Expected failures of the feedback domain, each with its HTTP status."""

from __future__ import annotations

from shared.http import AppError, Conflict, NotFound


class SurveyNotFound(NotFound):
    code = "survey_not_found"


class SurveyExists(Conflict):
    code = "survey_exists"


class InvalidAnswers(AppError):
    status_code = 422
    code = "invalid_answers"


class InvalidToken(AppError):
    status_code = 403
    code = "invalid_token"


class WrongCustomer(AppError):
    status_code = 403
    code = "token_for_another_customer"


class TokenExpired(AppError):
    status_code = 410
    code = "token_expired"


class InvitationNotFound(NotFound):
    code = "invitation_not_found"


class ComplaintNotFound(NotFound):
    code = "complaint_not_found"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class ResponseNotFound(NotFound):
    code = "response_not_found"


class InvalidRange(AppError):
    status_code = 422
    code = "invalid_range"
