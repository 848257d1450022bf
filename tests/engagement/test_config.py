"""Engagement settings: read from ENGAGEMENT_* variables, nonsense refused at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.engagement.config import EngagementSettings


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGAGEMENT_SMTP_PORT", "2525")
    monkeypatch.setenv("ENGAGEMENT_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("ENGAGEMENT_THANK_YOU_ENABLED", "false")
    settings = EngagementSettings()
    assert settings.smtp_port == 2525
    assert settings.thank_you_enabled is False
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert settings.service_name == "engagement"


def test_a_sending_timeout_shorter_than_an_smtp_exchange_is_refused() -> None:
    with pytest.raises(ValidationError, match="sending_timeout_seconds must exceed"):
        EngagementSettings(smtp_timeout_seconds=60, sending_timeout_seconds=30)


def test_both_tls_modes_at_once_are_refused() -> None:
    with pytest.raises(ValidationError, match="not both"):
        EngagementSettings(smtp_starttls=True, smtp_use_tls=True)
