"""Where each channel reaches a customer, as a column of their contact."""

from __future__ import annotations

from typing import Any

from services.engagement.models import Contact


def address(channel: str) -> Any:
    """Where a channel reaches the customer: e-mail; phone for SMS and chat apps; push
    providers resolve the customer's devices from the customer id."""
    if channel in ("sms", "chat"):
        return Contact.phone
    if channel == "push":
        return Contact.customer_id
    return Contact.email
