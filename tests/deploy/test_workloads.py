"""Deployments, Services, Jobs and disruption budgets agree with the code and the image."""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any

import pytest
from sqlalchemy.pool import QueuePool

from services.engagement.journal import default_path
from shared.app import SHUTDOWN_GRACE_SECONDS
from shared.db import create_engine
from tests.deploy.dockerfile import option, stages
from tests.deploy.kustomize import containers_of
from tests.deploy.manifests import (
    ROOT,
    Rendered,
    ServiceFacts,
    api_container,
    container_env,
    find,
    one,
    pod_specs,
    services,
    settings_from,
)

SERVICES = services()


@functools.cache
def get_paths(service: str) -> frozenset[str]:
    """GET paths of the service's real app (built with default settings; nothing is started)."""
    app = import_module(f"services.{service}.main").create_app()
    paths = app.openapi()["paths"]
    return frozenset(path for path, methods in paths.items() if "get" in methods)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_port_probes_and_metrics_match_the_app_and_image(
    overlay: Rendered, service: ServiceFacts
) -> None:
    container = api_container(overlay, service.name)
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == (
        "http",
        int(option(image_cmd(service.name), "--port")),
    )
    probes = {
        kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")
    }
    assert {kind: p["path"] for kind, p in probes.items()} == {
        "startup": "/healthz",
        "liveness": "/healthz",
        "readiness": "/readyz",
    }
    assert all(p["port"] == "http" for p in probes.values())
    annotations = one(overlay, "Deployment", service.name)["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    assert {"/healthz", "/readyz", annotations["prometheus.io/path"]} <= get_paths(service.name)


def test_the_route_check_can_fail() -> None:
    assert "/healthz" in get_paths("loyalty")
    assert "/health" not in get_paths("loyalty")


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_the_service_and_budget_select_the_pods(overlay: Rendered, service: ServiceFacts) -> None:
    deployment = one(overlay, "Deployment", service.name)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    svc = one(overlay, "Service", service.name)
    assert selects(svc["spec"]["selector"], pod_labels)
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]
    budget = one(overlay, "PodDisruptionBudget", service.name)
    assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels)
    assert budget["spec"].get("maxUnavailable", 0) >= 1, "a budget must allow node drains"
    others = [d for d in find(overlay, "Deployment") if d is not deployment]
    assert not any(
        selects(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        for d in others
    )


def image_cmd(service: str) -> list[str]:
    return stages()[service].cmd()


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_the_grace_period_outlasts_the_shutdown(overlay: Rendered, service: ServiceFacts) -> None:
    """preStop, then uvicorn drains requests, then the consumer batch and the relay (each
    up to SHUTDOWN_GRACE_SECONDS in shared/app.py) must finish before the kubelet kills."""
    pod = one(overlay, "Deployment", service.name)["spec"]["template"]["spec"]
    pre_stop = api_container(overlay, service.name)["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(option(image_cmd(service.name), "--timeout-graceful-shutdown"))
    needed = pre_stop + drain + 2 * SHUTDOWN_GRACE_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= needed


def test_every_pod_is_hardened(overlay: Rendered) -> None:
    uid = int(stages()["loyalty"].last("USER").split(":")[0])
    for workload, pod in pod_specs(overlay):
        assert pod["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            hardened(container)


def hardened(container: dict[str, Any]) -> None:
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_images_are_tagged_and_not_latest(overlay: Rendered) -> None:
    for container in containers_of(list(overlay)):
        image = container["image"]
        assert "@sha256:" in image or ":" in image.rsplit("/", 1)[-1], image
        assert not image.endswith(":latest")


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_a_migration_job_per_service_runs_tools_migrate(
    overlay: Rendered, service: ServiceFacts
) -> None:
    job = one(overlay, "Job", f"{service.name}-migrate")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "tools.migrate", service.name]
    assert service.name in import_module("tools.stack").SERVICE_NAMES  # tools.migrate's choices
    assert pod["restartPolicy"] == "Never"
    app = api_container(overlay, service.name)
    assert container["image"] == app["image"]
    url = f"{service.prefix}DATABASE_URL"
    assert container_env(overlay, container)[url] == container_env(overlay, app)[url]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_a_database_and_role_per_service(
    overlay: Rendered, service: ServiceFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_from(overlay, service, monkeypatch)  # the URL is a secret; the settings load
    database = one(overlay, "Database", service.name)
    (cluster,) = find(overlay, "Cluster")
    assert database["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    owner = roles[database["spec"]["owner"]]
    assert owner["login"] is True
    assert owner.get("superuser", False) is False
    owners = [d["spec"]["owner"] for d in find(overlay, "Database")]
    assert owners.count(database["spec"]["owner"]) == 1, "one role per database"


# docs/operations.md applies a rendering in these steps, selected by this label.
DEPLOY_STEPS = ("kafka", "database", "network", "config", "migration", "api")


def test_every_resource_belongs_to_a_deploy_step(overlay: Rendered) -> None:
    for resource in overlay:
        labels = resource["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "keepwell", resource["metadata"]["name"]
        assert labels["app.kubernetes.io/component"] in DEPLOY_STEPS, resource["metadata"]["name"]
    jobs = {r["metadata"]["labels"]["app.kubernetes.io/component"] for r in find(overlay, "Job")}
    assert jobs == {"migration"}
    config = {
        r["metadata"]["labels"]["app.kubernetes.io/component"] for r in find(overlay, "ConfigMap")
    }
    assert config == {"config"}, "migration Jobs read the ConfigMaps: applied before them"


def connections_per_pod(pool_size: int) -> int:
    """What one replica may open: each engine's pool plus its overflow (shared/db.py: the
    one for units of work, the one for read-only units of work)."""
    total = 0
    for read_only in (False, True):
        engine = create_engine(
            "postgresql+asyncpg://u:p@db/x", pool_size=pool_size, read_only=read_only
        )
        pool = engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        total += pool.size() + pool._max_overflow
    return total


def test_the_database_accepts_every_replica_at_full_pool(
    overlay: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    (cluster,) = find(overlay, "Cluster")
    limit = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
    needed = 0
    for service in SERVICES:
        settings = settings_from(overlay, service, monkeypatch)
        (hpa,) = find(overlay, "HorizontalPodAutoscaler", service.name)
        needed += hpa["spec"]["maxReplicas"] * connections_per_pod(settings.database_pool_size)
    migrations = len(SERVICES)  # one Job per service, a connection each
    assert needed + migrations < limit


def referenced_secrets(resources: Rendered) -> set[str]:
    """Names of every Secret a resource refers to (env, volumes, CNPG role passwords)."""
    found: set[str] = set()
    stack: list[Any] = list(resources)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                found.add(node["secretKeyRef"]["name"])
            if "secretName" in node:
                found.add(node["secretName"])
            if "passwordSecret" in node:
                found.add(node["passwordSecret"]["name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def test_every_referenced_secret_is_documented(overlay: Rendered) -> None:
    """Secrets are never committed, so operators must learn their names from the docs."""
    docs = (ROOT / "docs" / "operations.md").read_text()
    secrets = referenced_secrets(overlay)
    assert len(secrets) > len(SERVICES)
    for name in secrets:
        generic = name
        for service in SERVICES:
            generic = generic.replace(service.name, "<service>")
        documented = f"`{name}`" in docs or f"`{generic}`" in docs
        assert documented, f"Secret {name} is not documented in docs/operations.md"


def test_the_senders_journal_outlives_a_container_restart(
    overlay: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root filesystem is read-only and lost with the container: the journal of
    accepted e-mails (services/engagement/journal.py) must be on an emptyDir volume."""
    engagement = next(s for s in SERVICES if s.name == "engagement")
    settings = settings_from(overlay, engagement, monkeypatch)
    assert settings.sender_journal_enabled  # type: ignore[attr-defined]
    path = default_path(settings.db_url(), settings.sender_journal_dir)  # type: ignore[attr-defined]
    assert path is not None
    pod = one(overlay, "Deployment", "engagement")["spec"]["template"]["spec"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = api_container(overlay, "engagement")["volumeMounts"]
    assert any(
        m["name"] in empty_dirs and str(path.parent) == m["mountPath"].rstrip("/") for m in mounts
    ), f"{path.parent} is not an emptyDir mount"
