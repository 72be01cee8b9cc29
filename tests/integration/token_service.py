"""A token service for the registry's bearer-token flow (distribution's `auth: token`), in aiohttp.

It checks basic credentials and answers with a JWT signed by an ES256 key; the registry trusts
the key's self-signed certificate (`rootcertbundle`), found in the token's `x5c` header.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp.web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.fixtures.registry import TEST_PASSWORD, TEST_USERNAME, TokenAuth

SERVICE = "wasmlet-test-registry"
ISSUER = "wasmlet-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """Issues tokens; `requests` records each (user or None, scope) asked for."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    auth: TokenAuth | None = None
    requests: list[tuple[str | None, str]] = field(default_factory=list)

    def token(self, scope: str, lifetime: int = 300) -> str:
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        now = int(time.time())
        access = []
        for item in scope.split(" "):
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                access.append({"type": "repository", "name": name, "actions": actions.split(",")})
        claims = {"iss": ISSUER, "sub": TEST_USERNAME, "aud": SERVICE, "exp": now + lifetime, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        user = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (user, password) != (TEST_USERNAME, TEST_PASSWORD):
                return aiohttp.web.json_response({"details": "bad credentials"}, status=401)
        scope = request.query.get("scope", "")
        self.requests.append((user, scope))
        if user is None or request.query.get("service") != SERVICE:
            return aiohttp.web.json_response({"details": "login required"}, status=401)
        return aiohttp.web.json_response({"token": self.token(scope), "expires_in": 300})


def _self_signed(tmp: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp / "token-issuer.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


@contextlib.asynccontextmanager
async def token_service(tmp: Path) -> AsyncIterator[TokenService]:
    """Serve the realm on a free loopback port; `.auth` is what the registry needs to trust it."""
    key, cert, certs = _self_signed(tmp)
    service = TokenService(key, cert)
    app = aiohttp.web.Application()
    app.router.add_get("/token", service.handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    service.auth = TokenAuth(realm=f"http://127.0.0.1:{port}/token", service=SERVICE, issuer=ISSUER,
                             root_certs=certs)
    try:
        yield service
    finally:
        await runner.cleanup()
