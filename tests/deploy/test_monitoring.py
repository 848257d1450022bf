"""The Grafana dashboard, alert rules and KEDA lag query use the metrics the code exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics
from tests.deploy.manifests import K8S, find, load_yaml, rendered

MONITORING = K8S / "monitoring"
PROMQL_NAME = re.compile(r"\b((?:keepwell|http)_[a-z_]+)\b(\{[^}]*\})?")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
REQUIRED_ALERTS = {
    "consumer lag": "keepwell_consumer_lag",
    "dead-letter growth": "keepwell_events_dead_lettered_total",
    "outbox age": "keepwell_outbox_oldest_age_seconds",
    "API SLA": "http_request_duration_seconds_bucket",
}


def exported() -> dict[str, set[str]]:
    """Every series name /metrics exposes -> its label names."""
    series: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        labels = set(value._labelnames)
        for family in value.describe():
            if family.type == "counter":
                series[f"{family.name}_total"] = labels
            elif family.type == "histogram":
                series.update({f"{family.name}_{s}": labels for s in ("sum", "count")})
                series[f"{family.name}_bucket"] = labels | {"le"}
            else:
                series[family.name] = labels
    return series


def check_expression(expr: str) -> set[str]:
    """Asserts the expression uses only exported series and their labels; returns the series."""
    series = exported()
    used = set()
    assert expr.count("(") == expr.count(")"), expr
    for name, selector in PROMQL_NAME.findall(expr):
        assert name in series, f"{name} is not exported by shared/metrics.py"
        used.add(name)
        unknown = set(LABEL.findall(selector)) - series[name]
        assert not unknown, f"{name} has no labels {unknown}"
    assert used, f"no Keepwell metric in {expr}"
    available = set().union(*(series[name] for name in used))
    for grouping in GROUPING.findall(expr):
        labels = {label.strip() for label in grouping.split(",") if label.strip()}
        assert labels <= available, f"grouping by unknown labels {labels - available} in {expr}"
    return used


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in load_yaml(MONITORING / "alerts.yaml")["groups"]:
        yield from group["rules"]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "service"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["targets"] for p in panels)
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    assert all('service=~"$service"' in expr for expr in exprs), "every panel follows the selector"
    return exprs


def test_alert_rules_use_exported_metrics_and_are_complete() -> None:
    for rule in alert_rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert str(rule["alert"]).startswith("Keepwell")
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        check_expression(rule["expr"])


@pytest.mark.parametrize("topic", sorted(REQUIRED_ALERTS))
def test_the_issue_alerts_exist(topic: str) -> None:
    used = set().union(*(check_expression(rule["expr"]) for rule in alert_rules()))
    assert REQUIRED_ALERTS[topic] in used


def test_the_dashboard_shows_every_exported_metric() -> None:
    used = set().union(*(check_expression(expr) for expr in dashboard_expressions()))
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    missing = {re.sub(r"_(bucket|sum|count)$", "", s) for s in exported()} - families
    assert not missing, f"metrics missing from the dashboard: {missing}"


def test_the_keda_lag_query_uses_exported_metrics() -> None:
    for scaled in find(rendered("autoscaling/keda"), "ScaledObject"):
        (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
        query = trigger["metadata"]["query"]
        assert check_expression(query) == {"keepwell_consumer_lag"}
        assert f'service="{scaled["spec"]["scaleTargetRef"]["name"]}"' in query


@pytest.mark.parametrize(
    "expr",
    [
        "rate(keepwell_events_consumed[5m])",  # the counter is exported with _total
        'keepwell_outbox_backlog{topic="x"}',  # no such label
        "sum by (route) (keepwell_outbox_backlog)",  # grouping by a label it lacks
        "sum(keepwell_outbox_backlog",  # unbalanced
    ],
)
def test_the_expression_check_can_fail(expr: str) -> None:
    with pytest.raises(AssertionError):
        check_expression(expr)
