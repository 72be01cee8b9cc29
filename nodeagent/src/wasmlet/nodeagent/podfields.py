"""Unknown fields of a Pod manifest, named as the API server names them (no I/O here).

A manifest the API server receives with a field it does not know (`contianers:`) is accepted
with a warning `unknown field "spec.contianers"` (kubectl's strict validation refuses it). The
kubelet reads a static Pod without a word and drops such a field, so a typo silently changes
what runs; the agent warns instead, with the field's path.
"""

from __future__ import annotations

from typing import Any

from wasmlet.nodeagent.podschema import TYPES


def unknown_fields(pod: dict[str, Any]) -> list[str]:
    """The paths of the fields `pod` has that a v1.36 Pod does not, in the manifest's order."""
    found: list[str] = []
    _walk(pod, "Pod", "", found)
    return found


def _walk(value: Any, kind: str, path: str, found: list[str]) -> None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, kind, f"{path}[{index}]", found)
        return
    fields = TYPES.get(kind)
    if fields is None or not isinstance(value, dict):
        return  # not an object of a known type: its validation says what is wrong with it
    for name, child in value.items():
        where = f"{path}.{name}" if path else str(name)
        if name not in fields:
            found.append(where)
        elif fields[name]:
            _walk(child, fields[name], where, found)
