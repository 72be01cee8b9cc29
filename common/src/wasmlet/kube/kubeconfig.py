"""Kubeconfig files read and merged as kubectl merges them. Pure: files in, plain data out.

`KUBECONFIG` may name several files (`a:b:c`). client-go's loading rules: files that do not
exist are skipped (an explicit `--kubeconfig` must exist); for clusters, users and contexts the
first file that defines a name wins; `current-context` comes from the first file that sets one.
A relative path inside an entry (`certificate-authority`, `client-key`, `tokenFile`, an exec
`command` such as `./plugin`) is relative to the file that entry came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SECTIONS = ("clusters", "users", "contexts")


class ConfigError(Exception):
    """The credentials cannot be loaded; the message names the file and the field."""


@dataclass(frozen=True)
class Entry:
    """One named cluster, user or context, with the file it was read from."""

    name: str
    body: dict[str, Any]
    source: Path


@dataclass
class MergedKubeconfig:
    """The clusters, users and contexts of one or more kubeconfig files, merged."""

    sources: list[Path] = field(default_factory=list)
    current_context: str | None = None
    clusters: dict[str, Entry] = field(default_factory=dict)
    users: dict[str, Entry] = field(default_factory=dict)
    contexts: dict[str, Entry] = field(default_factory=dict)

    def describe(self) -> str:
        """The files, for error messages: `a` or `a:b`."""
        return os.pathsep.join(str(path) for path in self.sources) or "(no kubeconfig file)"

    def entry(self, section: str, name: str | None) -> Entry:
        """The named cluster, user or context; ConfigError naming the section when absent."""
        entries: dict[str, Entry] = getattr(self, section)
        if not name or name not in entries:
            what = section[:-1]
            raise ConfigError(f"kubeconfig {self.describe()}: no {what} named {name!r}"
                              + (f" (known: {', '.join(sorted(entries))})" if entries else ""))
        return entries[name]


def read_kubeconfigs(paths: list[Path], *, must_exist: bool) -> MergedKubeconfig:
    """Read and merge `paths` in order (first definition wins); skip missing files unless `must_exist`."""
    merged = MergedKubeconfig()
    for path in paths:
        if not must_exist and not path.exists():
            continue
        doc = _read(path)
        merged.sources.append(path)
        if merged.current_context is None and doc.get("current-context"):
            merged.current_context = str(doc["current-context"])
        for section in SECTIONS:
            entries: dict[str, Entry] = getattr(merged, section)
            for item in _list(doc, section, path):
                entries.setdefault(item.name, item)
    return merged


def kubeconfig_paths(value: str) -> list[Path]:
    """The files a `KUBECONFIG` value names, in order, empty parts and repeats dropped."""
    seen: list[Path] = []
    for part in value.split(os.pathsep):
        if part and Path(part) not in seen:
            seen.append(Path(part))
    return seen


def relative_to(entry: Entry, value: Any) -> str | None:
    """A path field of an entry; relative paths are relative to the entry's file (as in client-go)."""
    if not value:
        return None
    text = os.path.expanduser(str(value))
    return text if os.path.isabs(text) else str(entry.source.parent / text)


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path}: not a mapping of clusters, users and contexts")
    return doc


def _list(doc: dict[str, Any], section: str, path: Path) -> list[Entry]:
    items = doc.get(section) or []
    if not isinstance(items, list):
        raise ConfigError(f"kubeconfig {path}: {section} must be a list")
    inner = section[:-1]  # clusters[].cluster, users[].user, contexts[].context
    entries = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name"):
            raise ConfigError(f"kubeconfig {path}: {section}[{index}] has no name")
        body = item.get(inner) or {}
        if not isinstance(body, dict):
            raise ConfigError(f"kubeconfig {path}: {section}[{index}].{inner} must be a mapping")
        entries.append(Entry(str(item["name"]), body, path))
    return entries
