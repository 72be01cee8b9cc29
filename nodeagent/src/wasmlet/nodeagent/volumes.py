"""Materialise a Pod's volumes on disk, safely, and resolve its containers' environment.

ConfigMap and Secret volumes are written as files with the requested modes; `items[].path`
may not escape the volume (no absolute paths, no `..`), and Secret contents are never logged.
A missing ConfigMap/Secret/key is a `PodConfigError` (CreateContainerConfigError), retried
because the user may still create it — unless the reference is `optional`.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from wasmlet.nodeagent.errors import PodConfigError, UnsupportedPod
from wasmlet.nodeagent.objects import ObjectStore
from wasmlet.nodeagent.podspec import ContainerPlan, PodPlan
from wasmlet.nodeagent.runtime import Mount

Obj = dict[str, Any]


async def prepare_volumes(plan: PodPlan, root: Path, objects: ObjectStore) -> dict[str, Path]:
    """Create every volume of the Pod under `root`; return {volume name: host path}."""
    paths: dict[str, Path] = {}
    for volume in plan.volumes:
        name = volume["name"]
        target = root / name
        if "hostPath" in volume:
            paths[name] = Path(volume["hostPath"].get("path") or "/")
            continue
        if "configMap" in volume or "secret" in volume:
            await _write_projected(volume, target, plan.namespace, objects)
        else:  # emptyDir
            target.mkdir(parents=True, exist_ok=True)
        paths[name] = target
    return paths


def mounts_for(container: ContainerPlan, volume_paths: dict[str, Path]) -> list[Mount]:
    mounts = []
    for mount in container.volume_mounts:
        host = volume_paths[mount["name"]]
        sub = mount.get("subPath")
        if sub:
            host = _inside(host, sub, f"volumeMounts {mount['name']} subPath")
        mounts.append(Mount(host, mount["mountPath"], bool(mount.get("readOnly"))))
    return mounts


async def resolve_env(container: ContainerPlan, pod: PodPlan, objects: ObjectStore, field_values: Obj) -> dict[str, str]:
    """The container's environment per Kubernetes rules: envFrom first, then env, `$(VAR)` expanded."""
    env: dict[str, str] = {}
    for source in container.env_from:
        prefix = source.get("prefix") or ""
        data = await _source_data(source, pod.namespace, objects)
        env.update({prefix + k: v for k, v in data.items()})
    for var in container.env:
        name = var["name"]
        if "valueFrom" in var:
            value = await _value_from(var["valueFrom"], name, pod, objects, field_values)
            if value is None:
                continue
            env[name] = value
        else:
            env[name] = _expand(str(var.get("value") or ""), env)
    return env


async def _write_projected(volume: Obj, target: Path, namespace: str, objects: ObjectStore) -> None:
    is_secret = "secret" in volume
    source = volume["secret"] if is_secret else volume["configMap"]
    name = source.get("secretName") if is_secret else source.get("name")
    kind = "secret" if is_secret else "configmap"
    obj = await (objects.secret(namespace, name) if is_secret else objects.configmap(namespace, name))
    if obj is None:
        if source.get("optional"):
            target.mkdir(parents=True, exist_ok=True)
            return
        raise PodConfigError(f'{kind} "{name}" not found (volume {volume["name"]!r})')
    data = _decoded(obj, is_secret)
    items = source.get("items")
    default_mode = int(source.get("defaultMode", 0o644))
    wanted = [(i["key"], i["path"], int(i.get("mode", default_mode))) for i in items] if items else \
        [(k, k, default_mode) for k in data]
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for key, rel, mode in wanted:
        if key not in data:
            if source.get("optional"):
                continue
            raise PodConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
        path = _inside(staging, rel, f"volume {volume['name']} item")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[key])
        path.chmod(mode & 0o777)
    # Swap in the complete volume at once, as the kubelet's atomic writer does.
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def _decoded(obj: Obj, is_secret: bool) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    if is_secret:
        for key, value in (obj.get("data") or {}).items():
            data[key] = base64.b64decode(value)
        for key, value in (obj.get("stringData") or {}).items():
            data[key] = str(value).encode()
    else:
        for key, value in (obj.get("data") or {}).items():
            data[key] = str(value).encode()
        for key, value in (obj.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value)
    return data


def _inside(root: Path, rel: str, what: str) -> Path:
    """`root/rel`, refusing absolute paths, `..` and symlinks that lead out of `root`."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not rel:
        raise UnsupportedPod(f"{what} path {rel!r} must be relative and must not contain '..'", reason="InvalidVolume")
    path = root.joinpath(*pure.parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsupportedPod(f"{what} path {rel!r} leaves its volume", reason="InvalidVolume")
    return path


async def _source_data(source: Obj, namespace: str, objects: ObjectStore) -> dict[str, str]:
    if "secretRef" in source:
        ref, is_secret = source["secretRef"], True
        obj = await objects.secret(namespace, ref.get("name"))
    else:
        ref, is_secret = source.get("configMapRef") or {}, False
        obj = await objects.configmap(namespace, ref.get("name"))
    if obj is None:
        if ref.get("optional"):
            return {}
        kind = "secret" if is_secret else "configmap"
        raise PodConfigError(f'{kind} "{ref.get("name")}" not found')
    return {k: v.decode("utf-8", "replace") for k, v in _decoded(obj, is_secret).items()}


async def _value_from(source: Obj, name: str, pod: PodPlan, objects: ObjectStore, fields: Obj) -> str | None:
    for ref_key, is_secret in (("configMapKeyRef", False), ("secretKeyRef", True)):
        if ref_key in source:
            ref = source[ref_key]
            obj = await (objects.secret if is_secret else objects.configmap)(pod.namespace, ref.get("name"))
            data = _decoded(obj, is_secret) if obj is not None else None
            kind = "secret" if is_secret else "configmap"
            if data is None or ref.get("key") not in data:
                if ref.get("optional"):
                    return None
                what = f'{kind} "{ref.get("name")}" not found' if data is None else \
                    f"couldn't find key {ref.get('key')} in {kind} {pod.namespace}/{ref.get('name')}"
                raise PodConfigError(f"env {name}: {what}")
            return data[ref["key"]].decode("utf-8", "replace")
    if "fieldRef" in source:
        path = source["fieldRef"].get("fieldPath", "")
        if path.startswith("metadata.labels['") and path.endswith("']"):
            return pod.labels.get(path[len("metadata.labels['"):-2], "")
        if path not in fields:
            raise PodConfigError(f"env {name}: unsupported fieldRef {path!r}")
        return str(fields[path])
    raise PodConfigError(f"env {name}: valueFrom supports configMapKeyRef, secretKeyRef and fieldRef")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion; `$$(VAR)` escapes it."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$(", i):
            out.append("$(")
            i += 3
        elif value.startswith("$(", i) and (end := value.find(")", i)) != -1:
            key = value[i + 2:end]
            out.append(env.get(key, value[i:end + 1]))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)
