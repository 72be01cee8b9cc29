"""`Credentials`: the token or client certificate to present right now, and the TLS to present it with.

Static credentials (a token, a client certificate) never change; a `tokenFile` is re-read on
every use (projected service-account tokens rotate). An exec plugin or a legacy auth-provider
is run on first use and again when its credential expires or the API server answers 401
(`refresh`), as client-go does; concurrent callers share one run. The operator hands kopf the
very same `Login` (kopf's ConnectionInfo), so both clients authenticate alike.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from dataclasses import dataclass, field

from wasmlet.kube.config import ClusterConfig
from wasmlet.kube.kubeconfig import ConfigError


@dataclass(frozen=True)
class Login:
    """The credential for the next requests: a bearer token and/or a client certificate (PEM)."""

    token: str | None = field(default=None, repr=False)
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_data: bytes | None = field(default=None, repr=False)
    expiration: dt.datetime | None = None  # timezone-aware; None: until the server refuses it

    def expired(self, now: dt.datetime) -> bool:
        return self.expiration is not None and now >= self.expiration

    def pair(self) -> tuple[bytes, bytes] | None:
        if self.client_cert_data and self.client_key_data:
            return self.client_cert_data, self.client_key_data
        return None


class Credentials:
    """What to authenticate with, for one ClusterConfig; shared by every client of one process."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._login: Login | None = None
        self._lock = asyncio.Lock()
        self._contexts: dict[tuple[bytes, bytes] | None, ssl.SSLContext] = {}

    @property
    def refreshable(self) -> bool:
        """Whether asking again may give another credential (so a 401 is worth one retry)."""
        return bool(self.config.exec or self.config.auth_provider or self.config.token_file)

    async def login(self) -> Login:
        """The current credential, fetched (plugin run) when there is none or it expired."""
        config = self.config
        if not (config.exec or config.auth_provider):
            return self._static()
        async with self._lock:
            login = self._login
            if login is None or login.expired(dt.datetime.now(dt.UTC)):
                login = self._login = await self._fetch()
            return login

    async def refresh(self, stale: Login | None = None) -> Login:
        """A fresh credential after a 401; `stale` is the one refused (another caller may have replaced it)."""
        if self.config.exec or self.config.auth_provider:
            async with self._lock:
                if self._login is None or stale is None or self._login == stale:
                    self._login = await self._fetch()
                return self._login
        return self._static()

    def ssl_context(self, login: Login) -> ssl.SSLContext | bool:
        """TLS for https servers (cluster CA, tls-server-name, client certificate); True for http."""
        if not self.config.server.startswith("https://"):
            return True
        pair = login.pair() or self.config.client_pair()
        context = self._contexts.get(pair)
        if context is None:
            # Loaded for https only: an agent on KubeEdge's plain-http MetaServer never needs it.
            from wasmlet.kube.tls import client_context

            try:
                context = client_context(self.config.ca_pem(), insecure=self.config.insecure,
                                         server_name=self.config.tls_server_name, pair=pair)
            except (ssl.SSLError, ValueError) as exc:
                raise ConfigError(f"{self.config.source}: unusable certificate or key: {exc}") from exc
            self._contexts = {pair: context}  # a rotated exec certificate replaces the old context
        return context

    @staticmethod
    def headers(login: Login) -> dict[str, str]:
        return {"Authorization": f"Bearer {login.token}"} if login.token else {}

    def _static(self) -> Login:
        return Login(token=self.config.bearer_token())

    async def _fetch(self) -> Login:
        config = self.config
        if config.exec is not None:
            from wasmlet.kube.execplugin import run_exec

            credential = await run_exec(config.exec)
            return Login(token=credential.token, client_cert_data=credential.client_cert_data,
                         client_key_data=credential.client_key_data, expiration=credential.expiration)
        assert config.auth_provider is not None
        from wasmlet.kube.authprovider import auth_provider_login

        token, expiration = await asyncio.to_thread(auth_provider_login, config.auth_provider)
        return Login(token=token, expiration=expiration)
