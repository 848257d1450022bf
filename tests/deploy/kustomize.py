"""A minimal kustomize renderer for the features deploy/k8s uses, so the tests run without kubectl.

Supported (anything else in a kustomization.yaml raises ``Unsupported``):
- ``resources``: files (multi-document YAML) and directories holding a kustomization.yaml;
- ``namespace``: set on every namespaced resource;
- ``labels``: ``pairs`` added to ``metadata.labels`` only (no selectors, no templates);
- ``images``: ``name`` -> ``newName`` / ``newTag`` / ``digest`` in every container list;
- ``patches``: ``path:`` to a patch selected by its own kind and name, applied as a JSON merge
  patch (maps merge, lists are replaced: right for custom resources; for built-in kinds a list
  of objects in a patch raises, because kustomize would merge it by key), or ``target:``
  (``kind`` and optionally ``name``) with an inline JSON 6902 ``patch`` (add, replace, remove).

``test_render.py`` checks this renderer against ``kubectl kustomize`` where kubectl exists.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}


class Unsupported(ValueError):
    """The kustomization uses a feature this renderer does not implement."""


# libyaml's loader when PyYAML has it: the CRD files are large.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=LOADER) if doc is not None]


def render(directory: Path) -> list[Resource]:
    spec = _kustomization(directory)
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        resources += render(path) if path.is_dir() else load_documents(path)
    _refuse_duplicates(resources)
    for patch in spec.get("patches", []):
        _apply_patch(directory, patch, resources)
    for label_set in spec.get("labels", []):
        _add_labels(label_set, resources)
    for image in spec.get("images", []):
        _set_image(image, resources)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = spec["namespace"]
    return resources


def _kustomization(directory: Path) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise Unsupported(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    return spec


def identity(resource: Resource) -> tuple[str, str, str]:
    meta = resource["metadata"]
    return resource["kind"], meta.get("namespace", ""), meta["name"]


def _refuse_duplicates(resources: list[Resource]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for resource in resources:
        key = identity(resource)
        if key in seen:
            raise ValueError(f"resource {key} is declared twice")
        seen.add(key)


def _apply_patch(directory: Path, patch: dict[str, Any], resources: list[Resource]) -> None:
    if set(patch) == {"path"}:
        for doc in load_documents(directory / patch["path"]):
            target = _select(resources, {"kind": doc["kind"], "name": doc["metadata"]["name"]})
            if len(target) != 1:
                raise ValueError(f"patch {patch['path']} matches {len(target)} resources")
            _merge_patch(target[0], doc, builtin=is_builtin(doc))
    elif set(patch) == {"target", "patch"}:
        operations = yaml.safe_load(patch["patch"])
        targets = _select(resources, patch["target"])
        if not targets:
            raise ValueError(f"patch target {patch['target']} matches nothing")
        for resource in targets:
            for operation in operations:
                _json6902(resource, operation)
    else:
        raise Unsupported(f"unsupported patch form {sorted(patch)}")


def _select(resources: list[Resource], target: dict[str, str]) -> list[Resource]:
    if set(target) - {"kind", "name"}:
        raise Unsupported(f"unsupported patch target fields {sorted(target)}")
    return [
        r
        for r in resources
        if r["kind"] == target["kind"]
        and target.get("name", r["metadata"]["name"]) == r["metadata"]["name"]
    ]


def is_builtin(resource: Resource) -> bool:
    """Core kinds: apiVersion 'v1', 'apps/v1', or a group ending in '.k8s.io'."""
    group = resource["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def _merge_patch(target: dict[str, Any], patch: dict[str, Any], *, builtin: bool) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value, builtin=builtin)
        else:
            if builtin and isinstance(value, list) and any(isinstance(v, dict) for v in value):
                raise Unsupported(f"strategic merge of the list {key!r} is not implemented")
            target[key] = copy.deepcopy(value)


def _json6902(resource: Resource, operation: dict[str, Any]) -> None:
    *parents, last = _pointer(operation["path"])
    node: Any = resource
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    if op == "replace" and last not in node:
        raise ValueError(f"replace of missing {operation['path']} in {identity(resource)}")
    if op in ("add", "replace"):
        node[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del node[last]
    else:
        raise Unsupported(f"JSON patch operation {op!r}")


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _add_labels(label_set: dict[str, Any], resources: list[Resource]) -> None:
    if set(label_set) != {"pairs"}:
        raise Unsupported(f"labels support only 'pairs', got {sorted(label_set)}")
    for resource in resources:
        resource["metadata"].setdefault("labels", {}).update(label_set["pairs"])


def _set_image(image: dict[str, str], resources: list[Resource]) -> None:
    for container in containers_of(resources):
        name, tag = _split_image(container["image"])
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        else:
            new_tag = image.get("newTag", tag)
            container["image"] = f"{name}:{new_tag}" if new_tag else name


def _split_image(image: str) -> tuple[str, str]:
    name, _, digest = image.partition("@")
    if digest:
        return name, ""
    head, _, tag = name.rpartition(":")
    if head and "/" not in tag:
        return head, tag
    return name, ""


def containers_of(resources: list[Resource]) -> Iterator[dict[str, Any]]:
    """Every container and init container, wherever it sits in a resource."""
    stack: list[Any] = list(resources)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    yield from value
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
