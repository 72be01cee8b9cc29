"""`wasmlet push MODULE REF`: publish a wasm module or component as a CNCF wasm OCI artifact.

The artifact is what the agent pulls first: an OCI image manifest whose config has media type
`application/vnd.wasm.config.v0+json` and whose one layer is the binary itself, `application/wasm`.
The config says what the binary is, read from the binary: architecture `wasm`, os `wasip1` for a
core module; os `wasip2` and a `component` object (its `imports` and `exports`) for a component.
The upload uses the agent's own registry client, so push and pull authenticate the same way
(basic, or the bearer-token challenge flow).

Credentials: `--username` with `--password-stdin`, else `WASMLET_REGISTRY_USERNAME` /
`WASMLET_REGISTRY_PASSWORD`, else the `docker login` file (`$DOCKER_CONFIG/config.json` or
`~/.docker/config.json`), else anonymous.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.oci.auth import Credentials, credentials_for, parse_docker_config
from wasmlet.nodeagent.oci.client import TIMEOUT, RegistryClient, RegistryState, error_detail
from wasmlet.nodeagent.oci.manifest import OCI_MANIFEST, WASM_CONFIG, WASM_LAYER
from wasmlet.nodeagent.oci.reference import InvalidReference, Reference, parse_reference
from wasmlet.nodeagent.wasmbinary import OCI_OS, BinaryError, describe, kind_of, world


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    push = sub.add_parser("push", help="publish a wasm module to an OCI registry (CNCF wasm artifact)",
                          description="Push MODULE to REF as a CNCF wasm OCI artifact and print the pinned "
                                      "reference (REF@sha256:…) to use as a Pod's image.")
    push.add_argument("module", type=Path, help="the .wasm file (a WASI core module or component)")
    push.add_argument("reference", help="registry[:port]/repository[:tag]")
    push.add_argument("--username", "-u", help="registry user (the password is read from stdin)")
    push.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    push.add_argument("--insecure", action="store_true",
                      help="allow plain HTTP / unverified TLS to this registry (loopback always may)")


def push_command(args: argparse.Namespace) -> int:
    try:
        module = args.module.read_bytes()
        ref = parse_reference(args.reference)
    except OSError as exc:
        print(f"wasmlet push: {args.module}: {exc.strerror}", file=sys.stderr)
        return 2
    except InvalidReference as exc:
        print(f"wasmlet push: {args.reference}: {exc}", file=sys.stderr)
        return 2
    try:
        config_fields(module)
    except BinaryError as exc:
        print(f"wasmlet push: {args.module}: {exc}", file=sys.stderr)
        return 2
    state = RegistryState(insecure=(ref.registry,) if args.insecure else ())
    try:
        digest = asyncio.run(push_module(module, ref, _credentials(args, ref), state, args.module.name))
    except PullError as exc:
        print(f"wasmlet push: {ref}: {exc.message}", file=sys.stderr)
        return 1
    print(f"{ref.name}@{digest}")
    return 0


async def push_module(module: bytes, ref: Reference, credentials: Credentials | None, state: RegistryState,
                      filename: str = "module.wasm") -> str:
    """Upload `module` and its config, then the manifest under the reference's tag; return the manifest digest."""
    layer_digest = _digest(module)
    config = json.dumps({"created": _created(), "architecture": "wasm", **config_fields(module),
                         "layerDigests": [layer_digest]}, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": WASM_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": WASM_LAYER, "digest": layer_digest, "size": len(module),
                    "annotations": {"org.opencontainers.image.title": filename}}],
    }, separators=(",", ":")).encode()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        client = RegistryClient(session, state, ref.registry, ref.api_host, ref.repository, credentials,
                                actions="pull,push")
        for blob in (config, module):
            await _upload(client, blob)
        async with client.request("PUT", f"manifests/{ref.selector}", {"Content-Type": OCI_MANIFEST},
                                  data=manifest) as response:
            if response.status != 201:
                raise PullError(f"manifest upload refused: {await error_detail(response)}")
    return _digest(manifest)


def config_fields(binary: bytes) -> dict[str, Any]:
    """The config's `os` (and, for a component, its `component` world); BinaryError if not wasm."""
    kind = kind_of(binary[:8])
    if kind is None:
        raise BinaryError(f"{describe(binary[:8])}: not a wasm module or component")
    if kind == "module":
        return {"os": OCI_OS[kind]}
    found = world(binary)
    return {"os": OCI_OS[kind], "component": {"imports": list(found.imports), "exports": list(found.exports)}}


async def _upload(client: RegistryClient, blob: bytes) -> None:
    """The two-step monolithic upload (POST, then PUT with the digest), skipped when the blob is there."""
    digest = _digest(blob)
    async with client.request("HEAD", f"blobs/{digest}") as response:
        if response.status == 200:
            return
    async with client.request("POST", "blobs/uploads/") as response:
        if response.status != 202:
            raise PullError(f"blob upload refused: {await error_detail(response)}")
        location = response.headers["Location"]
    if "://" not in location:
        location = str(response.url.join(URL(location)))
    separator = "&" if "?" in location else "?"
    # A stream, not bytes: a component can be tens of MB, and one payload object rewinds itself
    # if the request is sent again (after an authentication challenge).
    body = aiohttp.payload.BytesIOPayload(io.BytesIO(blob), content_type="application/octet-stream")
    async with client.request("PUT", f"{location}{separator}digest={digest}",
                              {"Content-Type": "application/octet-stream"}, data=body) as response:
        if response.status != 201:
            raise PullError(f"blob upload failed: {await error_detail(response)}")


def _credentials(args: argparse.Namespace, ref: Reference) -> Credentials | None:
    if args.username:
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin \
            else os.environ.get("WASMLET_REGISTRY_PASSWORD", "")
        return Credentials(args.username, password)
    if os.environ.get("WASMLET_REGISTRY_USERNAME"):
        return Credentials(os.environ["WASMLET_REGISTRY_USERNAME"], os.environ.get("WASMLET_REGISTRY_PASSWORD", ""))
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        return credentials_for(parse_docker_config(json.loads(config.read_text())), ref)
    except (OSError, ValueError):
        return None


def _created() -> str:
    """Now, or SOURCE_DATE_EPOCH for reproducible pushes (the same module gives the same digest)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
