"""The credential of our own API client as kopf's `ConnectionInfo`, field for field.

kopf builds its own aiohttp session from a ConnectionInfo, so it gets the PEM *data* (never only
file paths: a kubeconfig with `certificate-authority-data` has no file to point at), the token
and client certificate of the current `Login` (an exec plugin's included), the proxy, and the
`expiration`, after which kopf logs in again. kopf has no field for `tls-server-name`; with one
set, kopf is handed our own TLS context as well, through a ConnectionInfo subclass.
"""

from __future__ import annotations

import dataclasses
import ssl

import kopf

from wasmlet.kube.credentials import Credentials, Login


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreparedTLSConnectionInfo(kopf.ConnectionInfo):
    """A ConnectionInfo whose TLS context is the one our client uses (for `tls-server-name`)."""

    tls_context: ssl.SSLContext | None = None

    def as_ssl_context(self) -> ssl.SSLContext:
        return self.tls_context if self.tls_context is not None else super().as_ssl_context()


def connection_info(credentials: Credentials, login: Login) -> kopf.ConnectionInfo:
    """What kopf needs to reach the API server as our client does, with `login`."""
    config = credentials.config
    pair = login.pair() or config.client_pair()
    context = credentials.ssl_context(login) if config.tls_server_name else None
    return PreparedTLSConnectionInfo(
        server=config.server,
        ca_data=config.ca_pem(),
        insecure=config.insecure or None,
        token=login.token,
        certificate_data=pair[0] if pair else None,
        private_key_data=pair[1] if pair else None,
        default_namespace=config.namespace,
        proxy_url=config.proxy_url,
        expiration=login.expiration,  # kopf logs in again after it (aware datetimes are fine)
        tls_context=context if isinstance(context, ssl.SSLContext) else None,
    )
