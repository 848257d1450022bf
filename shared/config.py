"""Settings every service shares. Each service subclasses with its own env prefix.

Everything that differs between a laptop and production (broker address, SASL,
database URL, topic prefix, latency knobs) is a setting, never code.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

INBOX_RETENTION_FLOOR_DAYS = 14.0
"""Kafka's own defaults (retention.ms and segment.ms, 7 days each): no inbox retention may
be shorter, whatever kafka_redelivery_days says."""
INBOX_MARGIN_DAYS = 1.0
"""Between the broker's clock (retention) and the database's (processed_at)."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str = "service"
    database_url: str = Field(
        default="", description="SQLAlchemy async URL; empty means var/<service>.db (SQLite)"
    )
    database_pool_size: int = 10
    database_echo: bool = False

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_enable_idempotence: bool = Field(
        default=False,
        description="On for Apache Kafka; off for the local Tansu broker (no InitProducerId)",
    )
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=1, le=10_000)
    kafka_fetch_min_bytes: int = Field(
        default=1,
        ge=1,
        le=10_485_760,
        description="Bytes a fetch waits for (up to kafka_fetch_max_wait_ms) before the broker"
        " answers; 1 answers as soon as anything is there",
    )
    kafka_max_poll_records: int = Field(default=500, ge=1, le=10_000)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_linger_ms: int = Field(default=5, ge=0)
    kafka_commit_interval_ms: int = Field(
        default=1000,
        ge=0,
        description="Longest wait before handled offsets are committed while polls bring "
        "messages; 0 commits after every poll",
    )
    consumer_batch_spacing_ms: int = Field(
        default=100,
        ge=0,
        le=1000,
        description="Shortest time between the starts of two consumer batches: a poll that"
        " comes sooner waits out the rest and takes what arrived meanwhile into the same"
        " batch (fewer transactions under a steady load); 0 never waits",
    )
    kafka_consumer_group: str = Field(default="", description="Empty means <prefix><service>")
    topic_prefix: str = ""

    consumer_enabled: bool = True
    relay_enabled: bool = True
    relay_poll_interval_ms: int = Field(default=250, ge=5)
    relay_batch_size: int = Field(default=500, ge=1)
    relay_batch_spacing_ms: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="Shortest time between the starts of two relay batches: a local commit"
        " sooner than that waits out the rest, so commits close together share one batch"
        " and one produce request; 0 never waits",
    )
    scheduler_poll_interval_ms: int = Field(default=1000, ge=5)
    gc_gen0_threshold: int = Field(
        default=50_000,
        ge=0,
        description="Container allocations between two young garbage collections (Python's"
        " default is 700, which under load promotes in-flight request objects and brings a"
        " full collection about once a second); 0 keeps Python's default",
    )
    gc_freeze_after_start: bool = Field(
        default=True,
        description="After start-up, collect once and move what is left (modules, classes,"
        " mappers, schemas) out of the collector's reach, so full collections walk only"
        " what the service made since",
    )
    loop_lag_interval_ms: int = Field(
        default=250,
        ge=0,
        le=60_000,
        description="How often the event loop's lag is sampled for"
        " keepwell_event_loop_lag_seconds (a timer that records how late it fires); 0 turns"
        " the sampling off",
    )
    retry_backoff_initial_ms: int = Field(default=200, ge=1)
    retry_backoff_max_ms: int = Field(default=10_000, ge=1)

    # The inbox (processed_events) must remember an event for as long as Kafka can hand
    # it back (docs/operations.md, "Inbox retention").
    kafka_redelivery_days: float | None = Field(
        default=37.0,
        gt=0,
        description="How long after a message is written Kafka can still deliver it: the"
        " longest retention.ms plus segment.ms (Kafka deletes whole segments) of the topics"
        " the service reads and of its dead-letter topic (redrive). 37 = 30 + 7, from"
        " deploy/k8s/base/kafka/topics.yaml and Kafka's default segment.ms. None = unknown:"
        " only the floor applies",
    )
    inbox_retention_days: float | None = Field(
        default=45.0,
        ge=INBOX_RETENTION_FLOOR_DAYS,
        description="Inbox rows older than this are deleted; at least kafka_redelivery_days"
        " + 1. None keeps every row (topics kept forever)",
    )
    inbox_prune_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often inbox rows past their retention are pruned"
    )

    auth_secret: SecretStr | None = Field(
        default=None, description="HS256 shared secret for bearer tokens"
    )
    auth_public_key: str | None = Field(default=None, description="PEM key for RS256/ES256")
    auth_jwks_url: str | None = Field(default=None, description="JWKS of the identity provider")
    auth_algorithms: list[str] = Field(default_factory=lambda: ["HS256", "RS256", "ES256"])
    auth_audience: str = "keepwell"
    auth_issuer: str | None = None

    http_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    http_rate_limit_per_minute: int = Field(
        default=6000, ge=0, description="Per credential and replica; 0 turns it off"
    )

    tracing_enabled: bool = Field(
        default=False, description="OpenTelemetry spans; trace context in Kafka headers"
    )
    tracing_exporter: Literal["otlp", "console", "none"] = "otlp"

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("inbox_retention_days", "kafka_redelivery_days", mode="before")
    @classmethod
    def _none_from_the_environment(cls, value: Any) -> Any:
        """``INBOX_RETENTION_DAYS=`` (or ``none``) turns pruning off; an unknown window
        likewise."""
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return value

    @model_validator(mode="after")
    def _inbox_outlives_redelivery(self) -> Self:
        kept, window = self.inbox_retention_days, self.kafka_redelivery_days
        if kept is not None and window is not None and kept < window + INBOX_MARGIN_DAYS:
            raise ValueError(
                f"inbox_retention_days ({kept:g}) must be at least kafka_redelivery_days"
                f" ({window:g}) + {INBOX_MARGIN_DAYS:g}: a row pruned sooner lets an event"
                " that Kafka re-delivers be handled twice"
            )
        return self

    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///var/{self.service_name}.db"

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def consumer_group(self) -> str:
        return self.kafka_consumer_group or f"{self.topic_prefix}{self.service_name}"
