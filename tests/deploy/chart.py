"""Rendering the chart in tests: Helm's own engine (helm-python-sdk, Helm's Go SDK, no binary).

`render(values)` returns the parsed objects of every template; `render_text(values)` the raw
output by template. The release is `wasmlet` in `wasmlet-system`, like the plain manifests.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "wasmlet"
KUBEEDGE_VALUES = CHART / "values-kubeedge.yaml"
RELEASE = "wasmlet"
NAMESPACE = "wasmlet-system"

Obj = dict[str, Any]


@functools.cache
def _chart() -> helm_python.Chart:
    # Loaded once for the session; charts are immutable in the SDK and safe to share.
    return helm_python.Chart.load(CHART)


def render_text(values: Obj | None = None, *, namespace: str = NAMESPACE, release: str = RELEASE) -> dict[str, str]:
    """The rendered templates by name (`operator-deployment.yaml`, `NOTES.txt`, ...)."""
    out = _chart().render(values or {}, name=release, namespace=namespace, is_install=True)
    return {path.split("/templates/", 1)[1]: text for path, text in out.items()}


def render(values: Obj | None = None, *, namespace: str = NAMESPACE, release: str = RELEASE) -> list[Obj]:
    """Every object the chart renders with `values`, in template order."""
    objects: list[Obj] = []
    for name, text in sorted(render_text(values, namespace=namespace, release=release).items()):
        if name != "NOTES.txt":
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def kubeedge_values() -> Obj:
    """The KubeEdge preset, as `-f helm/wasmlet/values-kubeedge.yaml` passes it."""
    return dict(yaml.safe_load(KUBEEDGE_VALUES.read_text()))


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    """The single object of `kind` (and `name`)."""
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def env_of(container: Obj) -> dict[str, Any]:
    """A container's env as name → value (or the valueFrom block)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def schema() -> Obj:
    return dict(json.loads((CHART / "values.schema.json").read_text()))


def manifest_generator() -> ModuleType:
    """helm/generate_manifests.py, the script that writes manifests/ (it is not a package)."""
    spec = importlib.util.spec_from_file_location("generate_manifests", ROOT / "helm" / "generate_manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
