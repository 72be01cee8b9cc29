"""The distribution API's read calls, on the authenticated `RegistryClient`.

Every answer is checked before it is trusted: manifests against the digest that named them
(or the one the registry claimed), bodies against size limits while they stream, blobs never
past their declared size. Failures become `PullError`s that say what failed.
"""

from __future__ import annotations

import hashlib

import aiohttp

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.oci.client import RegistryClient, error_detail
from wasmlet.nodeagent.oci.manifest import ACCEPT, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, Descriptor
from wasmlet.nodeagent.store import Writer

WASM_MAGIC = b"\0asm"


async def head(client: RegistryClient, tag: str) -> str | None:
    """The digest a tag points at now; None when the registry does not say (then GET resolves it)."""
    async with client.request("HEAD", f"manifests/{tag}", {"Accept": ACCEPT}) as response:
        if response.status == 404:
            raise PullError(f"not found: manifest {tag!r} ({await error_detail(response)})")
        digest = response.headers.get("Docker-Content-Digest", "")
        return digest if response.status == 200 and digest.startswith("sha256:") else None


async def manifest(client: RegistryClient, selector: str) -> tuple[bytes, str, str]:
    """Fetch a manifest or index by tag or digest; verify its digest; return (body, type, digest)."""
    async with client.request("GET", f"manifests/{selector}", {"Accept": ACCEPT}) as response:
        if response.status == 404:
            raise PullError(f"not found: manifest {selector!r} ({await error_detail(response)})")
        if response.status != 200:
            raise PullError(f"registry error: manifest {selector!r}: {await error_detail(response)}")
        body = await read(response, MAX_MANIFEST_BYTES, f"manifest {selector!r}")
        content_type = response.headers.get("Content-Type", "")
        claimed = response.headers.get("Docker-Content-Digest")
    digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
    expected = selector if selector.startswith("sha256:") else claimed
    if expected and expected.startswith("sha256:") and expected != digest:
        raise PullError(f"digest mismatch: manifest {selector!r} should be {expected}, got {digest}")
    return body, content_type, digest


async def small_blob(client: RegistryClient, descriptor: Descriptor) -> bytes:
    async with client.request("GET", f"blobs/{descriptor.digest}") as response:
        if response.status != 200:
            raise PullError(f"not found: image config {descriptor.digest} ({await error_detail(response)})")
        body = await read(response, MAX_CONFIG_BYTES, "image config")
    if f"sha256:{hashlib.sha256(body).hexdigest()}" != descriptor.digest:
        raise PullError(f"digest mismatch: image config {descriptor.digest}")
    return body


async def read(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise PullError(f"too large: {what} is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def download(client: RegistryClient, layer: Descriptor, out: Writer, check_magic: bool) -> None:
    """Stream a blob into `out`, never past its declared size; the caller verifies the digest."""
    async with client.request("GET", f"blobs/{layer.digest}") as response:
        if response.status == 404:
            raise PullError(f"not found: blob {layer.digest} ({await error_detail(response)})")
        if response.status != 200:
            raise PullError(f"registry error: blob {layer.digest}: {await error_detail(response)}")
        try:
            async for chunk in response.content.iter_chunked(1 << 16):
                if check_magic and out.size == 0 and not chunk.startswith(WASM_MAGIC[:len(chunk)]):
                    raise PullError(f"not a wasm artifact: layer {layer.digest} is not a wasm module "
                                    "(no \\0asm header)")
                if out.size + len(chunk) > layer.size:
                    raise PullError(f"digest mismatch: blob {layer.digest} is longer than its {layer.size} bytes")
                out.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PullError(f"registry unreachable: {exc.__class__.__name__} while downloading "
                            f"{layer.digest}") from exc
