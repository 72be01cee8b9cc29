"""The client side of TLS to the API server, built once from PEM bytes.

Python's `ssl` loads a CA from memory but a client key pair only from files: the pair is
written to a private scratch directory for the moment it loads and removed at once (kopf does
the same). `tls-server-name` needs the SNI and the name checked to differ from the URL's host;
asyncio passes the URL's host to `wrap_bio`, so a small SSLContext subclass substitutes it.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path
from typing import Any


class ServerNameContext(ssl.SSLContext):
    """An SSLContext that always presents and verifies `server_name` (kubeconfig `tls-server-name`)."""

    server_name: str = ""

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | bytes | None = None, session: ssl.SSLSession | None = None) -> Any:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name or server_hostname, session)

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:
        if self.server_name:
            kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


def client_context(ca_pem: bytes | None, *, insecure: bool = False, server_name: str | None = None,
                   pair: tuple[bytes, bytes] | None = None) -> ssl.SSLContext:
    """A context that trusts `ca_pem` (else the system's CAs) and presents `pair` (cert, key PEM)."""
    context = ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = server_name or ""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem.decode("ascii", errors="replace"))
    else:
        context.load_default_certs()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if pair is not None:
        with tempfile.TemporaryDirectory(prefix="wasmlet-kube-") as scratch:
            cert, key = Path(scratch) / "cert", Path(scratch) / "key"
            for path, data in ((cert, pair[0]), (key, pair[1])):
                path.touch(mode=0o600)
                path.write_bytes(data)
            context.load_cert_chain(cert, key)
    return context
