"""Manifests, image indexes and which layer holds the module (pure: no I/O).

Three artifact formats carry a wasm module (docs/contract.md):
- the CNCF wasm OCI artifact: config `application/vnd.wasm.config.v0+json`, one `application/wasm` layer;
- the older wasm-to-oci artifact: one `application/vnd.wasm.content.layer.v1+wasm` layer;
- a single-layer OCI/Docker image whose tar(.gz) layer holds one `.wasm` file (or the one its
  config's entrypoint names), as `docker buildx --platform wasi/wasm` builds them.
An image index (or Docker manifest list) is resolved to its `wasip1/wasm` (or `wasi/wasm`, or
`wasip2/wasm`) entry. The wasm artifact's config says which kind of binary its layer holds:
`os: "wasip1"` a core module, `os: "wasip2"` a component; the pulled bytes must agree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.wasmbinary import OCI_OS, Kind, describe, kind_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(MANIFESTS + INDEXES)
WASM_CONFIG = "application/vnd.wasm.config.v0+json"
WASM_LAYER = "application/wasm"
LEGACY_WASM_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
IMAGE_CONFIGS = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
TAR_LAYERS = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
              "application/vnd.docker.image.rootfs.diff.tar", "application/vnd.docker.image.rootfs.diff.tar.gzip")
# distribution refuses manifests over 4 MiB; anything larger is not a manifest we want to parse.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# An image config is a small JSON document; bound what we read for one entrypoint.
MAX_CONFIG_BYTES = 1024 * 1024
# Platform entries we run, best first: the wasm OCI artifact's and `docker buildx`'s spellings.
WASM_PLATFORMS = (("wasip1", "wasm"), ("wasi", "wasm"), ("wasip2", "wasm"))
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what, which digest, how many bytes; `platform` for index entries."""

    media_type: str
    digest: str
    size: int
    platform: tuple[str, str] | None = None

    @classmethod
    def parse(cls, obj: Any, where: str) -> Descriptor:
        """Validate a descriptor object; `where` names it in the error (`layers[0]`)."""
        if not isinstance(obj, dict):
            raise PullError(f"invalid manifest: {where} is not an object")
        digest, size = obj.get("digest"), obj.get("size")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise PullError(f"invalid manifest: {where}.digest {digest!r} is not a sha256 digest")
        if not isinstance(size, int) or size < 0:
            raise PullError(f"invalid manifest: {where}.size {size!r} is not a byte count")
        platform = obj.get("platform")
        pair = (str(platform.get("os", "")), str(platform.get("architecture", ""))) \
            if isinstance(platform, dict) else None
        return cls(str(obj.get("mediaType") or ""), digest, size, pair)


@dataclass(frozen=True)
class Document:
    """A fetched manifest or index: `entries` for an index, `config` and `layers` for a manifest."""

    media_type: str
    entries: tuple[Descriptor, ...] = ()
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()

    @property
    def is_index(self) -> bool:
        """An image index or Docker manifest list: an entry must be picked first."""
        return self.media_type in INDEXES


@dataclass(frozen=True)
class Artifact:
    """Where the module is: the layer, whether it is a tar to unpack, and the config (naming an
    entrypoint for an image, the binary's kind for a wasm artifact)."""

    layer: Descriptor
    packed: bool = False
    config: Descriptor | None = None


def parse_document(body: bytes, content_type: str) -> Document:
    """Parse a manifest or index; the body's own `mediaType` wins over the Content-Type header."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PullError(f"invalid manifest: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise PullError("invalid manifest: not a JSON object")
    media_type = str(doc.get("mediaType") or content_type.split(";")[0].strip())
    if media_type not in MANIFESTS + INDEXES:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "layers" in doc else media_type
    if media_type in INDEXES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise PullError("invalid manifest: an image index without a manifests list")
        return Document(media_type, entries=tuple(Descriptor.parse(e, f"manifests[{i}]")
                                                  for i, e in enumerate(entries)))
    if media_type not in MANIFESTS:
        raise PullError(f"not a wasm artifact: unsupported manifest type {media_type!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise PullError("invalid manifest: no layers list")
    return Document(media_type, config=Descriptor.parse(doc.get("config"), "config"),
                    layers=tuple(Descriptor.parse(layer, f"layers[{i}]") for i, layer in enumerate(layers)))


def pick_platform(index: Document) -> Descriptor:
    """The index entry to run: the first wasm platform by preference, or a lone entry without a platform."""
    for wanted in WASM_PLATFORMS:
        for entry in index.entries:
            if entry.platform == wanted:
                return entry
    if len(index.entries) == 1 and index.entries[0].platform is None:
        return index.entries[0]
    offered = ", ".join("/".join(e.platform) if e.platform else "(none)" for e in index.entries) or "none"
    raise PullError(f"not a wasm artifact: the image index has no wasip1/wasm platform entry (it has: {offered})")


def find_module(manifest: Document) -> Artifact:
    """Which layer holds the module, or PullError("not a wasm artifact …") saying what the manifest is."""
    wasm = [layer for layer in manifest.layers if layer.media_type in (WASM_LAYER, LEGACY_WASM_LAYER)]
    if len(wasm) == 1:
        wasm_config = manifest.config if manifest.config and manifest.config.media_type == WASM_CONFIG else None
        return Artifact(wasm[0], config=wasm_config)
    if len(wasm) > 1:
        raise PullError(f"not a wasm artifact: {len(wasm)} wasm layers (a container runs exactly one module)")
    tars = [layer for layer in manifest.layers if layer.media_type in TAR_LAYERS]
    if len(tars) == 1 and len(manifest.layers) == 1:
        return Artifact(tars[0], packed=True, config=manifest.config)
    config = manifest.config.media_type if manifest.config else "none"
    kinds = ", ".join(sorted({layer.media_type for layer in manifest.layers})) or "none"
    if tars:
        raise PullError(f"not a wasm artifact: an image with {len(manifest.layers)} layers; only single-layer "
                        "images holding one .wasm file are supported")
    raise PullError(f"not a wasm artifact: config {config}, layers {kinds}")


def entrypoint(config: bytes) -> str | None:
    """The `.wasm` file an image config's Entrypoint (or else Cmd) names, without its leading `/`."""
    doc = _config_json(config, "image")
    settings = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(settings, dict):
        return None
    command = settings.get("Entrypoint") or settings.get("Cmd") or []
    first = command[0] if isinstance(command, list) and command else None
    if isinstance(first, str) and first.endswith(".wasm"):
        return first.lstrip("/").removeprefix("./")
    return None


def declared_kind(config: bytes) -> Kind | None:
    """The kind a wasm artifact's config declares (`os`: wasip1, wasip2), None when it names neither."""
    doc = _config_json(config, "wasm")
    system = doc.get("os") if isinstance(doc, dict) else None
    return next((kind for kind, name in OCI_OS.items() if name == system), None)


def check_kind(declared: Kind | None, header: bytes) -> None:
    """PullError when the layer's binary is not the kind its config declares."""
    if declared is not None and kind_of(header) != declared:
        raise PullError(f"not a wasm artifact: its config says os {OCI_OS[declared]!r} (a wasm {declared}), "
                        f"but the layer is {describe(header)}")


def _config_json(config: bytes, what: str) -> Any:
    try:
        return json.loads(config)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PullError(f"invalid {what} config: not JSON ({exc})") from exc
