"""Legacy `auth-provider` users (`oidc`, `gcp`), through the `kubernetes` package's own loader.

kubectl still reads `auth-provider: {name: oidc}` kubeconfigs (and older ones say `gcp`); both
need an identity provider's refresh flow that the `kubernetes` package already implements. It
costs ~45 MB of resident memory on import, so it is imported here only, when a kubeconfig has
an auth-provider: a plain kubeconfig never loads it. It is an optional dependency
(`pip install 'wasmlet[auth-provider]'`). The loader blocks (it may call the identity
provider), so callers run this in a thread.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from wasmlet.kube.config import AuthProviderConfig
from wasmlet.kube.kubeconfig import ConfigError

SUPPORTED = ("oidc", "gcp")


def auth_provider_login(provider: AuthProviderConfig) -> tuple[str, dt.datetime | None]:
    """Run the provider (refreshing an expired token as kubectl would); return the token and its expiry."""
    if provider.name not in SUPPORTED:
        raise ConfigError(f"auth-provider {provider.name!r} is not supported (only {', '.join(SUPPORTED)}); "
                          "kubectl removed the others: use the provider's exec credential plugin instead")
    try:
        from kubernetes.client import Configuration
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.kube_config import KubeConfigLoader
    except ImportError as exc:
        raise ConfigError(f"auth-provider {provider.name!r} needs the kubernetes package: "
                          "pip install 'wasmlet[auth-provider]'") from exc
    configuration = Configuration()
    try:
        loader = KubeConfigLoader(  # type: ignore[no-untyped-call]  # the package has no annotations
            config_dict=provider.document, active_context=provider.context,
            config_base_path=provider.base_path)
        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    except (ConfigException, KeyError, ValueError, OSError) as exc:
        raise ConfigError(f"auth-provider {provider.name!r}: {exc}") from exc
    header = str(configuration.api_key.get("BearerToken") or "")
    token = header.removeprefix("Bearer ").strip()
    if not token:
        raise ConfigError(f"auth-provider {provider.name!r} gave no token (is its config complete?)")
    expiry = getattr(loader, "expiry", None)
    return token, _aware(expiry) if isinstance(expiry, dt.datetime) else jwt_expiry(token)


def jwt_expiry(token: str) -> dt.datetime | None:
    """The `exp` claim of a JWT (an OIDC id-token), or None for any other token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims: Any = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return dt.datetime.fromtimestamp(exp, dt.UTC) if isinstance(exp, (int, float)) else None


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
