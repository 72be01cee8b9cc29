"""manifests/: the chart rendered with helm/manifests-values.yaml, numbered in apply order.

`kubectl apply -f crds/ -f manifests/` must install what `helm install` installs (minus Helm's
bookkeeping), so the files are never edited by hand: this test fails when they drift from the
chart. Regenerate with `.venv/bin/python helm/generate_manifests.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.chart import NAMESPACE, ROOT, manifest_generator

MANIFESTS = ROOT / "manifests"
Obj = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(MANIFESTS.glob("*.yaml"))


def objects_of(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_manifests_are_exactly_what_the_chart_renders() -> None:
    wanted = manifest_generator().render_manifests()
    present = {path.name: path.read_text() for path in manifest_files()}
    assert sorted(present) == sorted(wanted), "regenerate: .venv/bin/python helm/generate_manifests.py"
    for name, text in wanted.items():
        assert present[name] == text, f"manifests/{name} is out of date: .venv/bin/python helm/generate_manifests.py"


def test_manifests_are_numbered_in_apply_order() -> None:
    names = [path.name for path in manifest_files()]
    assert names == sorted(names) and all(name[:2].isdigit() and name[2] == "-" for name in names)
    order = [{obj["kind"] for obj in objects_of(path)} for path in manifest_files()]
    position = {kind: index for index, kinds in enumerate(order) for kind in kinds}
    # Each object's prerequisites come in an earlier file (or the same one).
    assert position["Namespace"] == 0
    assert position["ServiceAccount"] <= position["ClusterRoleBinding"] < position["Deployment"]
    assert position["RuntimeClass"] < position["Deployment"] and position["ClusterRoleBinding"] < position["DaemonSet"]


def test_the_crd_comes_from_crds_and_is_not_repeated() -> None:
    kinds = {obj["kind"] for path in manifest_files() for obj in objects_of(path)}
    assert "CustomResourceDefinition" not in kinds
    assert {"Namespace", "RuntimeClass", "ServiceAccount", "ClusterRole", "Deployment", "DaemonSet"} <= kinds


def test_every_manifest_is_valid_for_kubernetes() -> None:
    version = kubernetes_validate.utils.latest_version()
    for path in [*manifest_files(), *sorted((ROOT / "crds").glob("*.yaml"))]:
        for obj in objects_of(path):
            kubernetes_validate.validate(obj, version, strict=True)
            if obj["kind"] not in ("Role", "RoleBinding", "Namespace", "RuntimeClass", "CustomResourceDefinition",
                                   "ClusterRole", "ClusterRoleBinding"):
                assert obj["metadata"]["namespace"] == NAMESPACE, (path.name, obj["kind"])


def test_the_readme_explains_every_file_and_how_to_regenerate() -> None:
    readme = (MANIFESTS / "README.md").read_text()
    for path in manifest_files():
        assert f"`{path.name}`" in readme, path.name
    assert "kubectl apply -f crds/ -f manifests/" in readme
    assert "helm/generate_manifests.py" in readme


def test_the_generator_refuses_to_delete_a_hand_written_manifest(tmp_path: Path) -> None:
    generator = manifest_generator()
    for path in manifest_files():
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "99-extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mine}\n")
    generator.OUTPUT = tmp_path
    with pytest.raises(SystemExit, match="99-extra.yaml was not generated"):
        generator.main([])
    assert (tmp_path / "99-extra.yaml").exists()
