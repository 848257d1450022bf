"""Settings every service shares. Each service subclasses with its own env prefix.

Everything that differs between a laptop and production (broker address, SASL,
database URL, topic prefix, latency knobs) is a setting, never code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    kafka_consumer_group: str = Field(default="", description="Empty means <prefix><service>")
    topic_prefix: str = ""

    consumer_enabled: bool = True
    relay_enabled: bool = True
    relay_poll_interval_ms: int = Field(default=250, ge=5)
    relay_batch_size: int = Field(default=500, ge=1)
    scheduler_poll_interval_ms: int = Field(default=1000, ge=5)
    retry_backoff_initial_ms: int = Field(default=200, ge=1)
    retry_backoff_max_ms: int = Field(default=10_000, ge=1)

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

    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///var/{self.service_name}.db"

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def consumer_group(self) -> str:
        return self.kafka_consumer_group or f"{self.topic_prefix}{self.service_name}"
