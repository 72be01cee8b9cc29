"""The kubelet API's serving certificate: configured files, or a self-signed pair kept in the state dir.

A kubelet without `--tls-cert-file` generates a self-signed certificate for its hostname and
IP; the API server then reaches it without verifying (or with `--kubelet-certificate-authority`
when the cluster signs kubelet certificates). We do the same, and reuse the pair across restarts
until it is within a week of expiry. The pair is minted in a child process: importing
`cryptography` would cost the long-running agent ~10 MB of resident memory for a one-off job.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

RENEW_BEFORE = dt.timedelta(days=7)
VALIDITY = dt.timedelta(days=365)


def server_context(cert_file: Path | None, key_file: Path | None, pki_dir: Path, node_name: str,
                   node_ip: str, client_ca: Path | bytes | None = None) -> ssl.SSLContext:
    """An SSL context for serving: the configured pair, else a self-signed one (made if needed).

    `client_ca` (a file, or PEM bytes: the cluster CA from the kubeconfig) verifies client
    certificates, such as the API server's kubelet-client certificate.
    """
    if cert_file is None or key_file is None:
        cert_file, key_file = pki_dir / "kubelet.crt", pki_dir / "kubelet.key"
        if not _still_valid(cert_file, key_file):
            subprocess.run([sys.executable, "-m", "wasmlet.nodeagent.tls", str(cert_file), str(key_file),
                            node_name, node_ip], check=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca is not None:
        # Optional, not required: token-bearing callers come without a certificate.
        context.verify_mode = ssl.CERT_OPTIONAL
        if isinstance(client_ca, bytes):
            context.load_verify_locations(cadata=client_ca.decode("ascii", errors="replace"))
        else:
            context.load_verify_locations(cafile=str(client_ca))
    return context


def _still_valid(cert_file: Path, key_file: Path) -> bool:
    """Our own pair is valid for VALIDITY from when it was written (its mtime)."""
    if not (cert_file.exists() and key_file.exists()):
        return False
    age = dt.timedelta(seconds=time.time() - cert_file.stat().st_mtime)
    return age < VALIDITY - RENEW_BEFORE


def _self_signed(cert_file: Path, key_file: Path, node_name: str, node_ip: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@wasmlet")])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(node_name)]
    try:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(node_ip)))
    except ValueError:
        pass
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    tmp_key = key_file.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_bytes)
    os.replace(tmp_key, key_file)
    tmp_cert = cert_file.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_cert, cert_file)


if __name__ == "__main__":
    cert_path, key_path, node, ip = sys.argv[1:5]
    _self_signed(Path(cert_path), Path(key_path), node, ip)
