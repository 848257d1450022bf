"""NetworkPolicies allow the traffic the design needs and no more.

A small evaluator of NetworkPolicy semantics (pods are isolated in a direction once a policy of
that type selects them; then a connection is allowed when any rule of any selecting policy
matches the peer and the port). Peers are described by their labels and their namespace's labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.deploy.kustomize import Resource
from tests.deploy.manifests import (
    Rendered,
    ServiceFacts,
    api_container,
    find,
    one,
    services,
    settings_from,
    the_kafka,
)

SERVICES = services()
HERE = {"kubernetes.io/metadata.name": "keepwell"}


@dataclass(frozen=True)
class Peer:
    labels: dict[str, str] = field(default_factory=dict)
    namespace: dict[str, str] = field(default_factory=lambda: HERE)
    external: bool = False


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = labels.get(expression["key"])
        wanted = expression["operator"]
        if wanted == "In" and present not in expression["values"]:
            return False
        if wanted in ("NotIn", "DoesNotExist", "Exists"):
            raise NotImplementedError(wanted)
    return True


def peer_matches(rule_peer: dict[str, Any], peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        return peer.external
    if peer.external:
        return False
    namespace_ok = (
        matches(rule_peer["namespaceSelector"], peer.namespace)
        if "namespaceSelector" in rule_peer
        else peer.namespace == HERE
    )
    return namespace_ok and matches(rule_peer.get("podSelector", {}), peer.labels)


def allowed(
    policies: list[Resource], pod: dict[str, str], direction: str, peer: Peer, port: int
) -> bool:
    selecting = [
        p
        for p in policies
        if matches(p["spec"]["podSelector"], pod) and direction in p["spec"]["policyTypes"]
    ]
    assert selecting, f"pod {pod} is not isolated for {direction}"
    key, side = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            ports = [p["port"] for p in rule.get("ports", [])]
            peers = rule.get(side)
            if ports and port not in ports:
                continue
            if peers is None or any(peer_matches(rp, peer) for rp in peers):
                return True
    return False


def pod_labels(resources: Rendered, kind: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = one(resources, kind, name)["spec"]["template"]["metadata"]["labels"]
    return labels


def kafka_brokers(resources: Rendered) -> Peer:
    """The labels Strimzi puts on the pods of a Kafka cluster."""
    cluster = the_kafka(resources)["metadata"]["name"]
    return Peer({"strimzi.io/cluster": cluster, "strimzi.io/kind": "Kafka"})


def postgres(resources: Rendered) -> Peer:
    """The label CloudNativePG puts on the pods of a cluster."""
    (cluster,) = find(resources, "Cluster")
    return Peer({"cnpg.io/cluster": cluster["metadata"]["name"]})


PROMETHEUS = Peer({"app": "prometheus"}, {"kubernetes.io/metadata.name": "monitoring"})
INGRESS = Peer({"app": "ingress"}, {"kubernetes.io/metadata.name": "ingress-nginx"})
DNS = Peer({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})
PG_PORT = 5432  # CloudNativePG's service port; the URL itself is a Secret


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_api_pods_reach_exactly_their_dependencies(
    overlay: Rendered, service: ServiceFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = find(overlay, "NetworkPolicy")
    pod = pod_labels(overlay, "Deployment", service.name)
    settings = settings_from(overlay, service, monkeypatch)
    kafka_port = int(settings.kafka_bootstrap_servers.rsplit(":", 1)[1])
    assert allowed(policies, pod, "Egress", kafka_brokers(overlay), kafka_port)
    assert allowed(policies, pod, "Egress", postgres(overlay), PG_PORT)
    assert allowed(policies, pod, "Egress", DNS, 53)
    assert not allowed(policies, pod, "Egress", Peer(external=True), 443)
    for other in SERVICES:
        other_pod = pod_labels(overlay, "Deployment", other.name)
        # Only the dashboard (in engagement) calls other services: their reports.
        expected = service.name == "engagement" and other.name != "engagement"
        assert allowed(policies, pod, "Egress", Peer(other_pod), 8000) == expected
        assert not allowed(policies, pod, "Egress", Peer(other_pod), 8001)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_api_pods_accept_http_from_ingress_prometheus_and_the_dashboard_only(
    overlay: Rendered, service: ServiceFacts
) -> None:
    policies = find(overlay, "NetworkPolicy")
    pod = pod_labels(overlay, "Deployment", service.name)
    port = api_container(overlay, service.name)["ports"][0]["containerPort"]
    assert allowed(policies, pod, "Ingress", INGRESS, port)
    assert allowed(policies, pod, "Ingress", PROMETHEUS, port)
    assert not allowed(policies, pod, "Ingress", INGRESS, port + 1)
    for other in SERVICES:
        caller = Peer(pod_labels(overlay, "Deployment", other.name))
        expected = other.name == "engagement" and service.name != "engagement"
        assert allowed(policies, pod, "Ingress", caller, port) == expected


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_migration_jobs_reach_only_the_database(overlay: Rendered, service: ServiceFacts) -> None:
    policies = find(overlay, "NetworkPolicy")
    pod = pod_labels(overlay, "Job", f"{service.name}-migrate")
    assert allowed(policies, pod, "Egress", postgres(overlay), PG_PORT)
    assert not allowed(policies, pod, "Egress", kafka_brokers(overlay), 9093)
    assert not allowed(policies, pod, "Ingress", PROMETHEUS, 8000)


def test_only_engagement_reaches_its_smtp_relay(
    overlay: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = find(overlay, "NetworkPolicy")
    (engagement,) = [s for s in SERVICES if s.name == "engagement"]
    smtp_port = int(settings_from(overlay, engagement, monkeypatch).model_dump()["smtp_port"])
    for service in SERVICES:
        pod = pod_labels(overlay, "Deployment", service.name)
        reaches = allowed(policies, pod, "Egress", Peer(external=True), smtp_port)
        assert reaches == (service.name == "engagement"), service.name


def test_the_kafka_listener_admits_the_api_pods(overlay: Rendered) -> None:
    (listener,) = the_kafka(overlay)["spec"]["kafka"]["listeners"]
    for service in SERVICES:
        pod = pod_labels(overlay, "Deployment", service.name)
        assert any(matches(p["podSelector"], pod) for p in listener["networkPolicyPeers"])
        job_pod = pod_labels(overlay, "Job", f"{service.name}-migrate")
        assert not any(matches(p["podSelector"], job_pod) for p in listener["networkPolicyPeers"])


def test_the_database_admits_keepwell_pods_only(overlay: Rendered) -> None:
    policies = find(overlay, "NetworkPolicy")
    database = postgres(overlay).labels
    for service in SERVICES:
        for kind, name in (("Deployment", service.name), ("Job", f"{service.name}-migrate")):
            assert allowed(
                policies, database, "Ingress", Peer(pod_labels(overlay, kind, name)), PG_PORT
            )
    assert not allowed(policies, database, "Ingress", Peer({"app": "stranger"}), PG_PORT)


def test_the_evaluator_can_refuse() -> None:
    deny = {"spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    assert not allowed([deny], {"a": "b"}, "Egress", DNS, 53)
    with pytest.raises(AssertionError, match="not isolated"):
        allowed([deny], {"a": "b"}, "Ingress", DNS, 53)
