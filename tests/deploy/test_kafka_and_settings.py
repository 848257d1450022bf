"""The manifests agree with the code: settings the services read, Kafka topics, users and ACLs."""

from __future__ import annotations

import posixpath

import pytest

from shared.config import ServiceSettings
from shared.events import all_topics, dead_letter_topic
from tests.deploy.kustomize import Resource
from tests.deploy.manifests import (
    Rendered,
    ServiceFacts,
    api_container,
    container_env,
    find,
    one,
    rendered,
    services,
    settings_from,
    the_kafka,
)

SERVICES = services()


def test_every_service_has_a_deployment(overlay: Rendered) -> None:
    deployments = {
        d["metadata"]["name"]
        for d in find(overlay, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    }
    assert deployments == {s.name for s in SERVICES}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_every_variable_set_is_a_setting_the_service_reads(
    overlay: Rendered, service: ServiceFacts, kind: str
) -> None:
    (workload,) = [
        r
        for r in find(overlay, kind)
        if r["metadata"]["labels"]["app.kubernetes.io/name"] == service.name
    ]
    for container in workload["spec"]["template"]["spec"]["containers"]:
        names = {name.upper() for name in container_env(overlay, container)}
        assert names, "no settings at all"
        assert names - service.env_names() == set()


def test_the_field_check_can_fail() -> None:
    (loyalty,) = [s for s in SERVICES if s.name == "loyalty"]
    assert "LOYALTY_KAFKA_BOOTSTRAP_SERVERS" in loyalty.env_names()
    assert "LOYALTY_KAFKA_BOOTSTRAP" not in loyalty.env_names()
    assert "PROFILE_KAFKA_BOOTSTRAP_SERVERS" not in loyalty.env_names()


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_settings_load_and_connect_to_the_strimzi_listener(
    overlay: Rendered, service: ServiceFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(overlay, service, monkeypatch)
    assert settings.service_name == service.name
    assert settings.kafka_enable_idempotence, "Strimzi runs Apache Kafka: idempotence on"
    kafka = the_kafka(overlay)
    host, port = settings.kafka_bootstrap_servers.split(":")
    assert host == f"{kafka['metadata']['name']}-kafka-bootstrap"
    (listener,) = [lst for lst in kafka["spec"]["kafka"]["listeners"] if lst["port"] == int(port)]
    assert settings.kafka_security_protocol.endswith("SSL") == listener["tls"]
    authentication = listener.get("authentication", {}).get("type")
    mechanism = {"scram-sha-512": "SCRAM-SHA-512"}.get(authentication)
    assert authentication in (None, "scram-sha-512"), "only SCRAM users are configured"
    assert settings.kafka_sasl_mechanism == mechanism
    assert settings.kafka_security_protocol.startswith("SASL_") == (mechanism is not None)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_credentials_come_from_the_service_kafka_user(
    overlay: Rendered, service: ServiceFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(overlay, service, monkeypatch)
    user = one(overlay, "KafkaUser", str(settings.kafka_sasl_username))
    assert (
        user["metadata"]["labels"]["strimzi.io/cluster"] == the_kafka(overlay)["metadata"]["name"]
    )
    env = container_env(overlay, api_container(overlay, service.name))
    password = env[f"{service.prefix}KAFKA_SASL_PASSWORD"]
    assert password == {"secretKeyRef": {"name": user["metadata"]["name"], "key": "password"}}


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_the_ca_file_is_the_cluster_ca_mounted_from_its_secret(
    overlay: Rendered, service: ServiceFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    cafile = str(settings_from(overlay, service, monkeypatch).kafka_ssl_cafile)
    container = api_container(overlay, service.name)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == posixpath.dirname(cafile)]
    pod = one(overlay, "Deployment", service.name)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert (
        volume["secret"]["secretName"]
        == f"{the_kafka(overlay)['metadata']['name']}-cluster-ca-cert"
    )
    paths = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    assert paths[posixpath.basename(cafile)] == "ca.crt"


def test_one_kafka_topic_per_topic_the_code_uses(
    overlay: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = the_kafka(overlay)["metadata"]["name"]
    topics = find(overlay, "KafkaTopic")
    names = [t["spec"].get("topicName", t["metadata"]["name"]) for t in topics]
    assert len(names) == len(set(names))
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == cluster for t in topics)
    for service in SERVICES:
        prefix = settings_from(overlay, service, monkeypatch).topic_prefix
        assert sorted(names) == sorted(all_topics(prefix))


def expected_acls(service: ServiceFacts, settings: ServiceSettings) -> set[tuple[str, str, str]]:
    acls = {("group", settings.consumer_group(), "Read")}
    for topic in service.input_topics:
        acls |= {("topic", settings.topic(topic), op) for op in ("Read", "Describe")}
    for topic in service.output_topics():
        acls |= {("topic", settings.topic(topic), op) for op in ("Write", "Describe")}
    if settings.kafka_enable_idempotence:
        acls.add(("cluster", "", "IdempotentWrite"))
    return acls


def granted_acls(user: Resource) -> set[tuple[str, str, str]]:
    granted = set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert acl.get("type", "allow") == "allow"
        assert resource.get("patternType", "literal") == "literal", "no prefix grants"
        for operation in acl["operations"]:
            granted.add((resource["type"], resource.get("name", ""), operation))
    return granted


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_kafka_user_acls_are_exactly_the_service_topics_and_group(
    overlay: Rendered, service: ServiceFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(overlay, service, monkeypatch)
    user = one(overlay, "KafkaUser", str(settings.kafka_sasl_username))
    assert granted_acls(user) == expected_acls(service, settings)


def test_every_topic_has_exactly_one_writer() -> None:
    writers = [topic for service in SERVICES for topic in service.output_topics()]
    assert sorted(writers) == sorted(all_topics())


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_replicas_never_exceed_the_partitions_consumed(
    overlay: Rendered, service: ServiceFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(overlay, service, monkeypatch)
    partitions = {
        t["spec"].get("topicName", t["metadata"]["name"]): t["spec"]["partitions"]
        for t in find(overlay, "KafkaTopic")
    }
    limit = min(partitions[settings.topic(topic)] for topic in service.input_topics)
    assert one(overlay, "Deployment", service.name)["spec"]["replicas"] <= limit
    for hpa in find(overlay, "HorizontalPodAutoscaler", service.name):
        assert hpa["spec"]["scaleTargetRef"]["name"] == service.name
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= limit
    for scaled in find(rendered("autoscaling/keda"), "ScaledObject", service.name):
        assert scaled["spec"]["scaleTargetRef"]["name"] == service.name
        assert scaled["spec"]["maxReplicaCount"] <= limit


KAFKA_DEFAULT_SEGMENT_MS = 7 * 24 * 3600 * 1000  # log.roll.hours = 168
DAY_MS = 24 * 3600 * 1000


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_the_inbox_outlives_every_redelivery_the_topics_allow(
    overlay: Rendered, service: ServiceFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka can hand an event back as long as a topic the service reads holds it, or its
    dead-letter topic (a redrive re-publishes it): up to retention.ms plus segment.ms after
    it was written (whole segments are deleted). kafka_redelivery_days must cover that, and
    the inbox is then kept longer (the settings refuse less)."""
    settings = settings_from(overlay, service, monkeypatch)
    configs = {
        t["spec"].get("topicName", t["metadata"]["name"]): t["spec"].get("config", {})
        for t in find(overlay, "KafkaTopic")
    }
    read = [*service.input_topics, dead_letter_topic(service.name)]
    windows = []
    for topic in read:
        config = configs[settings.topic(topic)]
        assert config.get("cleanup.policy", "delete") == "delete", f"{topic} kept forever"
        assert int(config["retention.ms"]) > 0, f"{topic} kept forever"
        segment = int(config.get("segment.ms", KAFKA_DEFAULT_SEGMENT_MS))
        windows.append(int(config["retention.ms"]) + segment)
    assert settings.kafka_redelivery_days is not None
    assert settings.kafka_redelivery_days * DAY_MS >= max(windows)
    assert settings.inbox_retention_days is not None, "pruning is on in every environment"
