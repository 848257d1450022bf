"""Every manifest is valid for its API: built-in kinds with kubernetes-validate (strict), custom
resources against their CRD's openAPIV3Schema (strict), both per file and as rendered."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.deploy.kustomize import Resource, is_builtin, load_documents
from tests.deploy.manifests import (
    K8S,
    KUBERNETES_VERSIONS,
    KUSTOMIZATIONS,
    SchemaNotFound,
    crds_available,
    manifest_files,
    rendered,
    validate_core,
    validate_custom,
)


def check(resource: Resource) -> None:
    if is_builtin(resource):
        for version in KUBERNETES_VERSIONS:
            validate_core(resource, version)
    else:
        crds_available()
        validate_custom(resource)


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_is_valid(path: Path) -> None:
    docs = load_documents(path)
    assert docs, f"{path} holds no resources"
    for doc in docs:
        check(doc)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_resource_is_valid(kustomization: str) -> None:
    for resource in rendered(kustomization):
        check(resource)


def test_no_secret_is_committed() -> None:
    """Secrets are referenced by name; their values are created at deploy time."""
    kinds = {doc["kind"] for path in manifest_files() for doc in load_documents(path)}
    assert "Secret" not in kinds


# --- the validators can fail ------------------------------------------------------------------


def test_core_validation_rejects_an_unknown_field() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}
    validate_core({**service, "spec": {"ports": [{"port": 80}]}}, KUBERNETES_VERSIONS[0])
    with pytest.raises(jsonschema.ValidationError):
        validate_core({**service, "spec": {"portz": []}}, KUBERNETES_VERSIONS[0])


def test_core_validation_rejects_a_wrong_type() -> None:
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"}}
    with pytest.raises(jsonschema.ValidationError):
        validate_core({**pdb, "spec": {"selector": "app=x"}}, KUBERNETES_VERSIONS[0])


def test_custom_validation_rejects_unknown_fields_and_missing_ones() -> None:
    crds_available()
    topic = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": {"partitions": 3},
    }
    validate_custom(topic)
    with pytest.raises(jsonschema.ValidationError):
        validate_custom({**topic, "spec": {"partitionz": 3}})
    with pytest.raises(jsonschema.ValidationError):
        validate_custom({**topic, "spec": {"partitions": "many"}})
    with pytest.raises(jsonschema.ValidationError):
        validate_custom({key: value for key, value in topic.items() if key != "spec"})


def test_custom_validation_knows_only_the_served_api_versions() -> None:
    crds_available()
    old = {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {"name": "t"},
    }
    with pytest.raises(AssertionError, match="no CRD schema"):
        validate_custom({**old, "spec": {}})


def test_core_validation_knows_which_kinds_it_has_no_schema_for() -> None:
    topic = {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": {"name": "t"}}
    with pytest.raises(SchemaNotFound):
        validate_core(topic, KUBERNETES_VERSIONS[0])


def test_the_cached_core_validator_agrees_with_kubernetes_validate() -> None:
    for resource in rendered("overlays/prod"):
        if is_builtin(resource):
            kubernetes_validate.validate(resource, KUBERNETES_VERSIONS[0], strict=True)
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[0], strict=True)
