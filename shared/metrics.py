"""Prometheus metrics every service exposes at /metrics (one process = one service)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template and status",
    ["service", "method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_CONSUMED = Counter(
    "keepwell_events_consumed_total",
    "Events handled (or skipped as duplicates) by topic and type",
    ["service", "topic", "type", "outcome"],
)
EVENTS_DEAD_LETTERED = Counter(
    "keepwell_events_dead_lettered_total",
    "Messages parked in the dead-letter topic",
    ["service", "topic", "reason"],
)
CONSUMER_ERRORS = Counter(
    "keepwell_consumer_transient_errors_total",
    "Batches retried after a transient failure (database or broker unavailable)",
    ["service"],
)
CONSUMER_BATCH_SECONDS = Histogram(
    "keepwell_consumer_batch_duration_seconds",
    "Time to handle and commit one partition batch",
    ["service"],
)
CONSUMER_LAG = Gauge(
    "keepwell_consumer_lag",
    "Messages behind the end of the partition after the last fetch",
    ["service", "topic", "partition"],
)
OUTBOX_PUBLISHED = Counter(
    "keepwell_outbox_published_total", "Outbox rows published to Kafka", ["service"]
)
OUTBOX_BACKLOG = Gauge("keepwell_outbox_backlog", "Unpublished outbox rows", ["service"])
OUTBOX_AGE = Gauge(
    "keepwell_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
RELAY_ERRORS = Counter("keepwell_outbox_relay_errors_total", "Relay failures", ["service"])
RELAY_BATCH_SECONDS = Histogram(
    "keepwell_outbox_relay_batch_duration_seconds", "Time to publish one outbox batch", ["service"]
)
SCHEDULER_LAG = Gauge(
    "keepwell_scheduler_lag_seconds", "How overdue the oldest due timer is", ["service"]
)
GC_PAUSE_SECONDS = Histogram(
    "keepwell_gc_pause_seconds",
    "Time the garbage collector held the process, by generation (2 = full collection)",
    ["service", "generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
EVENT_LOOP_LAG_SECONDS = Histogram(
    "keepwell_event_loop_lag_seconds",
    "How much later than due the event loop woke a timer (shared.loop_lag): time every"
    " request, batch and task of the process waited behind something holding the loop",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PRUNED_ROWS = Counter(
    "keepwell_pruned_rows_total",
    "Rows deleted past their retention (shared.retention), by table",
    ["service", "table"],
)
