"""The API server's validation of what a static manifest declares, for Pods that never went through it.

Names become paths on the node (a volume's directory, a container's log folder), so a manifest
folder gets the checks kube-apiserver would have made: object names are DNS subdomains,
namespaces, container and volume names DNS labels, ConfigMap and Secret keys config keys, and
subPaths and item paths stay relative. Messages are the API server's (`Pod "x" is invalid:
spec.volumes[0].name: Invalid value: …`). Pure functions: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

Obj = dict[str, Any]

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
LABEL_MESSAGE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                 "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MESSAGE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                     "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                     "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
KEY_MESSAGE = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
               "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")


class Invalid(ValueError):
    """The object would not pass the API server; the message is the API server's."""


def check_object(obj: Obj) -> None:
    """Raise `Invalid` for a Pod, ConfigMap or Secret the API server would refuse (its first error)."""
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") or {}
    errors = list(_meta_errors(meta))
    if kind == "Pod":
        errors += _pod_errors(obj.get("spec") or {})
    elif kind in ("ConfigMap", "Secret"):
        for field in ("data", "binaryData", "stringData"):
            errors += [f"{field}[{key}]: Invalid value: {go_quoted(key)}: {why}"
                       for key in (obj.get(field) or {}) for why in _key_errors(str(key))]
    if errors:
        raise Invalid(f"{kind} {go_quoted(str(meta.get('name', '')))} is invalid: {errors[0]}")


def _meta_errors(meta: Obj) -> Iterator[str]:
    name = str(meta.get("name") or "")
    if not _fits(DNS_SUBDOMAIN, name, 253):
        yield f"metadata.name: Invalid value: {go_quoted(name)}: {SUBDOMAIN_MESSAGE}"
    namespace = meta.get("namespace")
    if namespace is not None and not _fits(DNS_LABEL, str(namespace), 63):
        yield f"metadata.namespace: Invalid value: {go_quoted(str(namespace))}: {LABEL_MESSAGE}"


def _pod_errors(spec: Obj) -> list[str]:
    errors: list[str] = []
    volumes = spec.get("volumes") or []
    errors += _names(volumes, "spec.volumes")
    for index, volume in enumerate(volumes):
        for kind in ("configMap", "secret"):
            for item_index, item in enumerate((volume.get(kind) or {}).get("items") or []):
                where = f"spec.volumes[{index}].{kind}.items[{item_index}]"
                errors += [f"{where}.key: Invalid value: {go_quoted(str(item.get('key')))}: {why}"
                           for why in _key_errors(str(item.get("key") or ""))]
                errors += [f"{where}.path: Invalid value: {go_quoted(str(item.get('path')))}: {why}"
                           for why in _path_errors(str(item.get("path") or ""))]
    declared = {v.get("name") for v in volumes}
    for field in ("initContainers", "containers"):
        containers = spec.get(field) or []
        errors += _names(containers, f"spec.{field}")
        for index, container in enumerate(containers):
            for mount_index, mount in enumerate(container.get("volumeMounts") or []):
                where = f"spec.{field}[{index}].volumeMounts[{mount_index}]"
                if mount.get("name") not in declared:
                    errors.append(f"{where}.name: Not found: {go_quoted(str(mount.get('name')))}")
                sub = mount.get("subPath")
                if sub:
                    errors += [f"{where}.subPath: Invalid value: {go_quoted(str(sub))}: {why}"
                               for why in _path_errors(str(sub))]
    return errors


def _names(entries: list[Obj], where: str) -> list[str]:
    """Each entry's name is a DNS label, and unique among its siblings."""
    errors, seen = [], set()
    for index, entry in enumerate(entries):
        name = str(entry.get("name") or "")
        if not name:
            errors.append(f"{where}[{index}].name: Required value")
        elif not _fits(DNS_LABEL, name, 63):
            errors.append(f"{where}[{index}].name: Invalid value: {go_quoted(name)}: {LABEL_MESSAGE}")
        elif name in seen:
            errors.append(f"{where}[{index}].name: Duplicate value: {go_quoted(name)}")
        seen.add(name)
    return errors


def _key_errors(key: str) -> list[str]:
    if len(key) > 253:
        return ["must be no more than 253 characters"]
    if not CONFIG_KEY.fullmatch(key):
        return [KEY_MESSAGE]
    if key in (".", ".."):
        return [f"must not be {key!r}"]
    if key.startswith(".."):
        return ["must not start with '..'"]
    return []


def _path_errors(path: str) -> list[str]:
    """A relative path that stays below its volume (the API server's validateLocalDescendingPath)."""
    if path.startswith("/"):
        return ["must be a relative path"]
    if ".." in path.split("/"):
        return ["must not contain '..'"]
    return []


def _fits(pattern: re.Pattern[str], value: str, limit: int) -> bool:
    return len(value) <= limit and pattern.fullmatch(value) is not None


def go_quoted(text: str) -> str:
    """Go's %q: how the API server quotes an invalid value."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
