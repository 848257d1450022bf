from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class EngagementSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENGAGEMENT_")

    service_name: str = "engagement"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(default=False, description="Upgrade with STARTTLS after connect")
    smtp_use_tls: bool = Field(default=False, description="Implicit TLS from the first byte")
    smtp_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Deadline for one whole SMTP exchange (connect to QUIT)"
    )
    smtp_announce_next: bool = Field(
        default=True,
        description="On a server offering PIPELINING, write a worker's next message's MAIL,"
        " RCPT and DATA behind the content before it (RFC 2920: one round trip per message);"
        " off for a server that mishandles commands sent after the final dot",
    )
    mail_from: str = "Keepwell <hello@keepwell.local>"

    sms_webhook_url: str | None = Field(
        default=None, description="SMS provider's webhook; unset: SMS is not a usable channel"
    )
    sms_webhook_secret: SecretStr = Field(
        default=SecretStr("change-me"), description="HMAC-SHA256 key for the signature header"
    )
    push_webhook_url: str | None = Field(
        default=None, description="Push provider's webhook; unset: push is not a usable channel"
    )
    push_webhook_secret: SecretStr = Field(default=SecretStr("change-me"))
    chat_webhook_url: str | None = Field(
        default=None, description="Chat-app provider's webhook (by phone); unset: not usable"
    )
    chat_webhook_secret: SecretStr = Field(default=SecretStr("change-me"))
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    support_email: str = Field(
        default="support@keepwell.local",
        description="Where service-recovery alerts for the support team go",
    )

    sender_poll_interval_ms: int = Field(
        default=200,
        ge=5,
        description="While messages are due: claim at least, and sweep at most, this often",
    )
    sender_idle_poll_ms: int = Field(
        default=5000,
        ge=5,
        description="With nothing due that the sender knows of: look again after this long "
        "(a local commit, or the earliest future due time it saw, wakes it sooner)",
    )
    sender_batch_size: int = Field(
        default=200, ge=1, le=1000, description="Claims queued for the workers (per channel)"
    )
    sender_concurrency: int = Field(
        default=8, ge=1, le=100, description="Sends in flight at once (one SMTP connection each)"
    )
    contact_wait_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="How long a due message waits for an e-mail address before it is suppressed",
    )
    max_send_attempts: int = Field(default=5, ge=1)
    send_retry_initial_seconds: float = Field(
        default=60.0, gt=0, description="Delay after the first transient failure; doubles after"
    )
    send_retry_max_seconds: float = Field(default=3600.0, gt=0)
    sending_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A message claimed this long ago with no outcome is presumed interrupted",
    )
    sender_journal_enabled: bool = Field(
        default=True,
        description="Journal accepted messages locally until recorded, so a restarted "
        "sender records them instead of sending them again (services/engagement/journal.py)",
    )
    sender_journal_dir: str = Field(
        default="",
        description="Where the journal lives; empty: beside a SQLite database, else var/. "
        "Must outlive the process (Kubernetes: an emptyDir volume)",
    )

    thank_you_enabled: bool = True
    thank_you_max_age_seconds: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Purchases older than this (e.g. a replay of history) get no thank-you",
    )

    win_back_delay_seconds: float = Field(
        default=24 * 3600.0, ge=0, description="From churn.risk_changed (high) to the message"
    )
    after_sales_delay_seconds: float = Field(
        default=14 * 24 * 3600.0, ge=0, description="From a purchase to its care reminder"
    )
    after_sales_categories: list[str] = Field(
        default_factory=list,
        description="Product categories whose purchase earns a care reminder; empty: none",
    )
    attribution_window_seconds: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="A purchase this soon after a message is attributed to it",
    )
    # Where the dashboard reads the other services' reports (defaults: `make run`).
    profile_url: str = Field(default="http://127.0.0.1:8001", description="Profile's base URL")
    loyalty_url: str = Field(default="http://127.0.0.1:8002", description="Loyalty's base URL")
    feedback_url: str = Field(default="http://127.0.0.1:8004", description="Feedback's base URL")
    upstream_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Deadline of one call to another service's report"
    )
    frequency_cap: int = Field(
        default=3, ge=0, description="Marketing messages per customer per rolling 7 days"
    )
    max_lateness_seconds: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="A message due longer ago than this (downtime) is suppressed as stale",
    )

    @model_validator(mode="after")
    def _sending_timeout_outlasts_smtp(self) -> Self:
        if self.sending_timeout_seconds <= self.smtp_timeout_seconds:
            raise ValueError(
                "sending_timeout_seconds must exceed smtp_timeout_seconds, or a slow but "
                "successful send would be presumed lost and sent again"
            )
        if self.smtp_starttls and self.smtp_use_tls:
            raise ValueError("choose smtp_starttls or smtp_use_tls, not both")
        return self
