"""The test-side kustomize renderer: its features, its refusals, and agreement with kubectl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.kustomize import Unsupported, identity, render
from tests.deploy.manifests import K8S, KUSTOMIZATIONS, rendered

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 3,
        "template": {"spec": {"containers": [{"name": "web", "image": "keepwell-web"}]}},
    },
}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}


def write(folder: Path, kustomization: dict[str, object], **files: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, docs in files.items():
        (folder / name).write_text(yaml.safe_dump_all(docs if isinstance(docs, list) else [docs]))
    return folder


def test_resources_namespace_labels_and_images(tmp_path: Path) -> None:
    write(tmp_path / "base", {"resources": ["app.yaml"]}, **{"app.yaml": [DEPLOYMENT, NAMESPACE]})
    overlay = write(
        tmp_path / "overlay",
        {
            "resources": ["../base"],
            "namespace": "shop",
            "labels": [{"pairs": {"team": "retention"}}],
            "images": [{"name": "keepwell-web", "newName": "reg/web", "newTag": "1.2"}],
        },
    )
    deployment, namespace = render(overlay)
    assert deployment["metadata"] == {
        "name": "web",
        "namespace": "shop",
        "labels": {"team": "retention"},
    }
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/web:1.2"
    assert "labels" not in deployment["spec"]["template"].get("metadata", {})
    assert "namespace" not in namespace["metadata"]


def test_patches_by_file_and_by_target(tmp_path: Path) -> None:
    write(tmp_path / "base", {"resources": ["app.yaml"]}, **{"app.yaml": DEPLOYMENT})
    merge = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    merge["spec"] = {"revisionHistoryLimit": 2}
    json_patch = "- {op: replace, path: /spec/replicas, value: 1}"
    overlay = write(
        tmp_path / "overlay",
        {
            "resources": ["../base"],
            "patches": [
                {"path": "merge.yaml"},
                {"target": {"kind": "Deployment"}, "patch": json_patch},
            ],
        },
        **{"merge.yaml": merge},
    )
    (deployment,) = render(overlay)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["revisionHistoryLimit"] == 2


@pytest.mark.parametrize(
    "kustomization",
    [
        {"resources": ["app.yaml"], "commonLabels": {"a": "b"}},
        {"resources": ["app.yaml"], "labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]},
        {
            "resources": ["app.yaml"],
            "patches": [{"target": {"labelSelector": "a=b"}, "patch": "[]"}],
        },
    ],
)
def test_unsupported_features_are_refused(tmp_path: Path, kustomization: dict[str, object]) -> None:
    with pytest.raises(Unsupported):
        render(write(tmp_path, kustomization, **{"app.yaml": DEPLOYMENT}))


def test_list_merges_in_builtin_kinds_are_refused(tmp_path: Path) -> None:
    patch = {**DEPLOYMENT, "spec": {"template": {"spec": {"containers": [{"name": "web"}]}}}}
    folder = write(tmp_path, {"resources": ["app.yaml"], "patches": [{"path": "p.yaml"}]})
    (folder / "app.yaml").write_text(yaml.safe_dump(DEPLOYMENT))
    (folder / "p.yaml").write_text(yaml.safe_dump(patch))
    with pytest.raises(Unsupported, match="containers"):
        render(folder)


def test_a_patch_that_matches_nothing_fails(tmp_path: Path) -> None:
    patch = "- {op: replace, path: /spec/replicas, value: 1}"
    kustomization = {
        "resources": ["app.yaml"],
        "patches": [{"target": {"kind": "Job"}, "patch": patch}],
    }
    with pytest.raises(ValueError, match="matches nothing"):
        render(write(tmp_path, kustomization, **{"app.yaml": DEPLOYMENT}))


def test_duplicate_resources_fail(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="twice"):
        render(
            write(tmp_path, {"resources": ["app.yaml"]}, **{"app.yaml": [DEPLOYMENT, DEPLOYMENT]})
        )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_renderer_agrees_with_kubectl_kustomize(kustomization: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    expected = {identity(doc): doc for doc in yaml.safe_load_all(out) if doc}
    ours = {identity(doc): doc for doc in rendered(kustomization)}
    assert sorted(ours) == sorted(expected)
    for key, doc in ours.items():
        assert doc == expected[key], key
