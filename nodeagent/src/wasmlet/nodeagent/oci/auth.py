"""Registry credentials and auth challenges (pure: no I/O).

Credentials come from the Pod's `imagePullSecrets`: Secrets of type
`kubernetes.io/dockerconfigjson` (`{"auths": {...}}` under `.dockerconfigjson`) or the older
`kubernetes.io/dockercfg`, the same file `docker login` writes. Keys are matched against an
image as the kubelet's credential keyring matches them: scheme ignored, host parts may be
globs (`*.example.com`), the port must be equal, and a key with a path matches only
repositories under that path; the most specific key wins.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

from wasmlet.nodeagent.oci.reference import DOCKER_HUB, Reference

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"
# `docker login` to Docker Hub writes this historical key; it means docker.io.
_DOCKER_HUB_KEYS = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Credentials:
    """A registry login. `repr` hides the password: these objects end up in logs and tracebacks."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    def basic(self) -> str:
        """The value of an `Authorization: Basic …` header."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    """A `WWW-Authenticate` header: the scheme (`basic`, `bearer`) and its parameters."""

    scheme: str
    params: dict[str, str]


def parse_docker_config(config: Any) -> dict[str, Credentials]:
    """Credentials by registry key from a docker config (`{"auths": {...}}` or the bare dockercfg map)."""
    if not isinstance(config, dict):
        raise ValueError("not a JSON object")
    entries = config.get("auths", config)
    if not isinstance(entries, dict):
        raise ValueError("auths is not a JSON object")
    found: dict[str, Credentials] = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            continue
        username, password = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                username, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ValueError(f"auths[{key!r}].auth is not base64 of user:password") from exc
        if isinstance(username, str) and isinstance(password, str) and username:
            found[str(key)] = Credentials(username, password)
    return found


def secret_credentials(secret: dict[str, Any]) -> dict[str, Credentials]:
    """Credentials from one image pull Secret; ValueError when it is not a usable pull secret."""
    kind = secret.get("type")
    field = {DOCKERCONFIGJSON: ".dockerconfigjson", DOCKERCFG: ".dockercfg"}.get(str(kind))
    if field is None:
        raise ValueError(f"type {kind!r} is not {DOCKERCONFIGJSON} or {DOCKERCFG}")
    raw = (secret.get("stringData") or {}).get(field)
    if raw is None:
        encoded = (secret.get("data") or {}).get(field)
        if encoded is None:
            raise ValueError(f"has no {field} key")
        try:
            raw = base64.b64decode(str(encoded), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{field} is not base64") from exc
    try:
        return parse_docker_config(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{field} is not JSON: {exc.msg}") from exc


def credentials_for(keyring: dict[str, Credentials], ref: Reference) -> Credentials | None:
    """The credentials whose key matches `ref` most specifically, or None (pull anonymously)."""
    matches = [(len(key), creds) for key, creds in keyring.items() if _matches(key, ref)]
    return max(matches, key=lambda m: m[0])[1] if matches else None


def parse_challenge(header: str) -> Challenge:
    """`Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"` → Challenge."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def _matches(key: str, ref: Reference) -> bool:
    host, path = _normalise_key(key)
    target_host, _, target_port = ref.registry.partition(":")
    key_host, _, key_port = host.partition(":")
    if key_port != target_port:
        return False
    key_parts, target_parts = key_host.split("."), target_host.split(".")
    if len(key_parts) != len(target_parts):
        return False
    if not all(fnmatch.fnmatchcase(t, k) for k, t in zip(key_parts, target_parts, strict=True)):
        return False
    return not path or ref.repository == path or ref.repository.startswith(path + "/")


def _normalise_key(key: str) -> tuple[str, str]:
    text = key.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    host, _, path = text.rstrip("/").partition("/")
    host = host.lower()
    if host in _DOCKER_HUB_KEYS or host == DOCKER_HUB:
        host = DOCKER_HUB
        path = "" if path in ("v1", "v2") else path
    return host, path
