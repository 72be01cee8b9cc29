"""Materialise a Pod's volumes on disk, safely, and resolve its containers' environment.

ConfigMap and Secret volumes are written as files with the requested modes; `items[].path`
may not escape the volume (no absolute paths, no `..`), and Secret contents are never logged.
A missing ConfigMap/Secret/key is a `PodConfigError` (CreateContainerConfigError), retried
because the user may still create it — unless the reference is `optional`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from wasmlet.nodeagent.errors import PodConfigError, UnsupportedPod
from wasmlet.nodeagent.objects import ObjectStore
from wasmlet.nodeagent.podspec import ContainerPlan, PodPlan, volume_type
from wasmlet.nodeagent.runtime import Mount
from wasmlet.nodeagent.validation import DNS_LABEL

Obj = dict[str, Any]


# The kubelet mounts these read-only whatever the volumeMount says (Kubernetes 1.10,
# CVE-2017-1002102): the files are the agent's copy of API objects, not the module's to change.
ALWAYS_READ_ONLY = frozenset({"configMap", "secret", "downwardAPI", "projected"})
SECRET_MODE = 0o600


async def prepare_volumes(plan: PodPlan, root: Path, objects: ObjectStore, fields: Obj) -> dict[str, Path]:
    """Create every volume of the Pod under `root`; return {volume name: host path}."""
    paths: dict[str, Path] = {}
    for volume in plan.volumes:
        name = volume["name"]
        if not isinstance(name, str) or not DNS_LABEL.fullmatch(name) or len(name) > 63:  # it becomes a path
            raise UnsupportedPod(f"volume name {name!r} is not a DNS label", reason="InvalidVolume")
        target = root / name
        if "hostPath" in volume:
            paths[name] = Path(volume["hostPath"].get("path") or "/")
            continue
        if "persistentVolumeClaim" in volume:
            continue  # a directory on the node already, found by claims.resolve_claims
        if any(kind in volume for kind in ("configMap", "secret", "downwardAPI", "projected")):
            await _write_projected(volume, target, plan.namespace, objects, fields)
        else:  # emptyDir
            target.mkdir(parents=True, exist_ok=True)
        paths[name] = target
    return paths


def mounts_for(container: ContainerPlan, volume_paths: dict[str, Path], volumes: list[Obj] | None = None) -> list[Mount]:
    """The container's volumeMounts on the host; `volumes` (the Pod's) tell each mount's volume type.

    A subPath is only checked for its form here: it is opened beneath its volume when the
    container starts (`runtime.beneath`), because a container may make it a link until then.
    """
    types = {v["name"]: volume_type(v) for v in volumes or []}
    mounts = []
    for mount in container.volume_mounts:
        name = mount["name"]
        sub = mount.get("subPath") or ""
        if sub:
            _relative(sub, f"volumeMounts {name} subPath")
        kind = types.get(name, "")
        read_only = bool(mount.get("readOnly")) or kind in ALWAYS_READ_ONLY
        mounts.append(Mount(volume_paths[name], mount["mountPath"], read_only, kind, sub_path=sub, volume=name))
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
            value = str(var.get("value") or "")
            try:
                # Linear, yet a ~1 MB value of references takes a tenth of a second: not on the event loop.
                env[name] = await asyncio.to_thread(_expand, value, env) if len(value) > 65536 else _expand(value, env)
            except PodConfigError as exc:
                raise PodConfigError(f"env {name}: {exc.message}") from None
    return env


async def _write_projected(volume: Obj, target: Path, namespace: str, objects: ObjectStore, fields: Obj) -> None:
    """Write a configMap, secret, downwardAPI or projected volume: all of its files appear at once."""
    if "projected" in volume:
        spec = volume["projected"]
        sources = [(kind, source) for entry in spec.get("sources") or [] for kind, source in entry.items()]
    else:
        kind = next(k for k in ("configMap", "secret", "downwardAPI") if k in volume)
        spec = volume[kind]
        sources = [(kind, spec)]
    # The API server defaults defaultMode to 0644; a Pod that reached us without it (a static
    # manifest) gets 0644 for what anyone may read and 0600 for a Secret's files.
    default_mode = int(spec.get("defaultMode", SECRET_MODE if "secret" in volume else 0o644))
    files: dict[str, tuple[bytes, int]] = {}
    for kind, source in sources:
        files.update(await _source_files(kind, source, namespace, objects, fields, default_mode, volume["name"]))
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o700 if "secret" in volume else 0o755)
    for rel, (data, mode) in files.items():
        path = _inside(staging, rel, f"volume {volume['name']} item")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode & 0o777)
    # Swap in the complete volume at once, as the kubelet's atomic writer does.
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


async def _source_files(kind: str, source: Obj, namespace: str, objects: ObjectStore, fields: Obj,
                        default_mode: int, volume: str) -> dict[str, tuple[bytes, int]]:
    """The files one volume source contributes: {relative path: (bytes, mode)}."""
    mode = int(source.get("defaultMode", default_mode))
    if kind == "downwardAPI":
        return {item["path"]: (_field_value(item.get("fieldRef", {}).get("fieldPath", ""), fields).encode(),
                               int(item.get("mode", mode))) for item in source.get("items") or []}
    if kind == "serviceAccountToken":
        # A module has no network unless the Pod asks for it, so it cannot use an API token;
        # no credential is minted for it (see docs/decisions.md).
        return {}
    if kind not in ("configMap", "secret"):
        raise UnsupportedPod(f"volume {volume!r}: projected source {kind!r} is not supported", reason="UnsupportedVolume")
    is_secret = kind == "secret"
    what = "secret" if is_secret else "configmap"
    name = _object_name(source.get("secretName") or source.get("name"), f"volume {volume!r}: the {what}")
    obj = await (objects.secret(namespace, name) if is_secret else objects.configmap(namespace, name))
    if obj is None:
        if source.get("optional"):
            return {}
        raise PodConfigError(f'{what} "{name}" not found (volume {volume!r})')
    data = _decoded(obj, is_secret)
    items = source.get("items")
    wanted = [(i["key"], i["path"], int(i.get("mode", mode))) for i in items] if items else \
        [(k, k, mode) for k in data]
    files: dict[str, tuple[bytes, int]] = {}
    for key, rel, item_mode in wanted:
        if key not in data:
            if source.get("optional"):
                continue
            raise PodConfigError(f"couldn't find key {key} in {what} {namespace}/{name}")
        files[rel] = (data[key], item_mode)
    return files


def _field_value(path: str, fields: Obj) -> str:
    if path.startswith("metadata.labels['") and path.endswith("']"):
        return str(fields.get("labels", {}).get(path[len("metadata.labels['"):-2], ""))
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted(fields.get("labels", {}).items()))
    if path not in fields:
        raise PodConfigError(f"unsupported fieldRef {path!r}")
    return str(fields[path])


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


def _relative(rel: str, what: str) -> PurePosixPath:
    """`rel` as a relative path, refusing absolute paths and `..` as the API server does."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not rel:
        raise UnsupportedPod(f"{what} path {rel!r} must be relative and must not contain '..'", reason="InvalidVolume")
    return pure


def _inside(root: Path, rel: str, what: str) -> Path:
    """`root/rel` for a file the agent writes into a staging directory it has just made (nothing
    else can have put a link there)."""
    parts = _relative(rel, what).parts
    if not parts:  # "." names the volume itself, which is a directory, not a file
        raise UnsupportedPod(f"{what} path {rel!r} names no file", reason="InvalidVolume")
    return root.joinpath(*parts)


def _object_name(name: Any, what: str) -> str:
    """A referenced object's name; the API server rejects a reference without one ("Required value")."""
    if not isinstance(name, str) or not name:
        raise UnsupportedPod(f"{what} has no name (Required value)")
    return name


async def _source_data(source: Obj, namespace: str, objects: ObjectStore) -> dict[str, str]:
    if "secretRef" in source:
        ref, is_secret = source["secretRef"], True
        obj = await objects.secret(namespace, _object_name(ref.get("name"), "envFrom: the secret"))
    else:
        ref, is_secret = source.get("configMapRef") or {}, False
        obj = await objects.configmap(namespace, _object_name(ref.get("name"), "envFrom: the configmap"))
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
        try:
            return _field_value(source["fieldRef"].get("fieldPath", ""), fields)
        except PodConfigError as exc:
            raise PodConfigError(f"env {name}: {exc.message}") from exc
    raise PodConfigError(f"env {name}: valueFrom supports configMapKeyRef, secretKeyRef and fieldRef")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion, as the kubelet's: a defined VAR is replaced, an undefined one
    stays `$(VAR)`, `$$` is one `$`, and a `$` before anything else (or an unclosed `$(`) stays.

    Linear, and in C: the kubelet's scan looks for the closing `)` again after every `$(`, which
    a value of many unclosed `$(` makes quadratic. No reference can close after the value's last
    `)`, so the text before it is matched left to right (each `$(` closes at the next `)`), and
    after it only `$$` pairs change.
    """
    last = value.rfind(")")
    head, tail = value[:last + 1], value[last + 1:]
    grown = [0]

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        text = "$" if name is None else env.get(name, match.group(0))
        grown[0] += len(text) - len(match.group(0))
        if grown[0] > MAX_EXPANSION_GROWTH:
            raise PodConfigError(f"a value expands by more than {MAX_EXPANSION_GROWTH} bytes")
        return text

    return _REFERENCE.sub(replace, head) + tail.replace("$$", "$")


# What `$(VAR)` may add to one value: the same variable referenced over and over would otherwise
# multiply a 1 MiB value a hundred thousand times in the agent's memory. A real container could
# not start with such an environment either (Linux takes at most 2 MiB of argv and environment).
MAX_EXPANSION_GROWTH = 2 * 1024 * 1024
# `$$`, or `$(` up to the next `)`: what the kubelet's expansion rewrites (a `$` before anything
# else is left as it is, and cannot change how the rest pairs up).
_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")
