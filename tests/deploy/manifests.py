"""Where the manifests are, how they are validated, and what the code says they must agree with."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import referencing
import yaml

from shared.config import ServiceSettings
from shared.events import SERVICES
from tests.deploy.kustomize import Resource, load_documents, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
OVERLAYS = ("dev", "prod")
# Every kustomization that is applied on its own or pulled in by an overlay.
KUSTOMIZATIONS = (*(f"overlays/{o}" for o in OVERLAYS), "autoscaling/keda")
# Validated for the oldest Kubernetes release we target and the newest the package bundles.
KUBERNETES_VERSIONS = (
    "1.32",
    kubernetes_validate.utils.major_minor(kubernetes_validate.utils.latest_version()),
)


def _find_crds() -> Path:
    """KEEPWELL_CRDS_DIR, else shared/crds beside the checkout, else the workplace's copy."""
    if configured := os.environ.get("KEEPWELL_CRDS_DIR"):
        return Path(configured)
    candidates = [ROOT.parent / "shared" / "crds", Path("/work/shared/crds")]
    return next((c for c in candidates if c.is_dir()), candidates[0])


CRDS = _find_crds()
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@functools.cache
def rendered(kustomization: str) -> tuple[Resource, ...]:
    return tuple(render(K8S / kustomization))


def manifest_files() -> list[Path]:
    """Kubernetes resource files (not kustomizations, overlay patches or monitoring rules)."""
    skip = {"overlays", "monitoring"}
    return sorted(
        p
        for p in K8S.rglob("*.yaml")
        if p.name != "kustomization.yaml" and not skip & set(p.relative_to(K8S).parts)
    )


def find(resources: tuple[Resource, ...], kind: str, name: str | None = None) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]


def one(resources: tuple[Resource, ...], kind: str, name: str) -> Resource:
    found = find(resources, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


# --- validation -----------------------------------------------------------------------------


class SchemaNotFound(LookupError):
    """kubernetes-validate bundles no schema for this kind (a custom resource)."""


def validate_core(resource: Resource, version: str) -> None:
    """Raises if a built-in kind is invalid (strict: unknown fields are errors).

    The same schemas and rules as ``kubernetes_validate.validate(..., strict=True)``, with the
    validators cached: the library re-reads a 1.3 MB definitions file on every call.
    """
    validator = _core_validator(version, resource["apiVersion"], resource["kind"])
    validator.validate(resource)


@functools.cache
def _core_validator(version: str, api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    directory = _schema_directory(version)
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = _schema_json(f"{directory}/{kind.lower()}-{api}.json")
    except FileNotFoundError:
        raise SchemaNotFound(f"{api_version} {kind} (Kubernetes {version})") from None
    registry: referencing.Registry[Any] = (
        referencing.Resource.from_contents(schema) @ referencing.Registry()
    )
    registry = (
        referencing.Resource.from_contents(_schema_json(f"{directory}/_definitions.json"))
        @ registry
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _schema_directory(version: str) -> str:
    utils = kubernetes_validate.utils
    bundled = [v for v in utils.all_versions() if utils.major_minor(v) == version]
    assert bundled, f"kubernetes-validate bundles no schemas for Kubernetes {version}"
    return f"kubernetes-json-schema/v{bundled[-1]}-local-strict"


@functools.cache
def _schema_json(name: str) -> Any:
    with package_files.as_file(package_files.files("kubernetes_validate").joinpath(name)) as path:
        return json.loads(path.read_text())


def crds_available() -> None:
    """The CRD schemas are not part of the repository; without them these checks skip."""
    if not CRDS.is_dir():
        pytest.skip(f"CRD schemas not found at {CRDS} (set KEEPWELL_CRDS_DIR)")


@functools.cache
def crd_schemas() -> dict[tuple[str, str], jsonschema.Draft202012Validator]:
    """(apiVersion, kind) -> a validator for the served version's openAPIV3Schema, made strict."""
    schemas: dict[tuple[str, str], jsonschema.Draft202012Validator] = {}
    for path in sorted(CRDS.rglob("*.yaml")):
        for doc in load_documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served"):
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    validator = jsonschema.Draft202012Validator(schema)
                    schemas[(f"{group}/{version['name']}", kind)] = validator
    return schemas


def strict(schema: Any) -> Any:
    """Reject unknown fields as the API server's strict field validation does."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    open_object = (
        schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema
    )
    if "properties" in schema and not open_object:
        result["additionalProperties"] = False
    return result


def validate_custom(resource: Resource) -> None:
    key = (resource["apiVersion"], resource["kind"])
    schemas = crd_schemas()
    assert key in schemas, f"no CRD schema for {key}; known: {sorted(schemas)}"
    meta = resource["metadata"]
    assert DNS_SUBDOMAIN.match(meta["name"]), meta["name"]
    assert len(meta["name"]) <= 253, meta["name"]
    schemas[key].validate(resource)


# --- what the code says ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceFacts:
    name: str
    settings_cls: type[ServiceSettings]

    @property
    def prefix(self) -> str:
        return str(self.settings_cls.model_config.get("env_prefix", ""))

    def env_names(self) -> set[str]:
        return {(self.prefix + field).upper() for field in self.settings_cls.model_fields}

    @property
    def input_topics(self) -> tuple[str, ...]:
        return tuple(import_module(f"services.{self.name}.consumers").INPUT_TOPICS)

    def output_topics(self) -> set[str]:
        """Its own events (shared/events/<service>.py), what profile ingests, its dead letters."""
        from shared.events import dead_letter_topic

        topics = {event.TOPIC for event in import_module(f"shared.events.{self.name}").EVENTS}
        if self.name == "profile":
            topics |= {
                event.TOPIC for event in import_module("services.profile.service.ingest").INGESTIBLE
            }
        return topics | {dead_letter_topic(self.name)}


def services() -> list[ServiceFacts]:
    facts = []
    for name in SERVICES:
        module = import_module(f"services.{name}.config")
        facts.append(ServiceFacts(name, getattr(module, f"{name.capitalize()}Settings")))
    return facts


def pod_specs(resources: tuple[Resource, ...]) -> Iterator[tuple[Resource, dict[str, Any]]]:
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job"):
            yield resource, resource["spec"]["template"]["spec"]


def container_env(resources: tuple[Resource, ...], container: dict[str, Any]) -> dict[str, Any]:
    """Every variable a container gets: its ConfigMaps' data (envFrom), then its own env."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unexpected envFrom {source}"
        env.update(one(resources, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


PLACEHOLDER_URL = "postgresql+asyncpg://user:secret@db:5432/service"
Rendered = tuple[Resource, ...]


def api_container(resources: Rendered, service: str) -> dict[str, Any]:
    pod = one(resources, "Deployment", service)["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = [c for c in pod["containers"] if c["name"] == service]
    assert len(containers) == 1, f"Deployment {service} has no container named {service}"
    return containers[0]


def settings_from(
    resources: Rendered, service: ServiceFacts, monkeypatch: pytest.MonkeyPatch
) -> ServiceSettings:
    """The settings object the service builds from the environment the manifests give it."""
    for name in list(os.environ):
        if name.upper().startswith(service.prefix.upper()):
            monkeypatch.delenv(name)
    for name, value in container_env(resources, api_container(resources, service.name)).items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.setenv(name, PLACEHOLDER_URL if name.endswith("DATABASE_URL") else "x")
    return service.settings_cls()


def the_kafka(resources: Rendered) -> Resource:
    (kafka,) = find(resources, "Kafka")
    return kafka


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
