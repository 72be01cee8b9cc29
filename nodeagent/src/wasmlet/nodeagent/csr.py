"""Key pairs, certificate requests and certificate dates for TLS bootstrap, in a child process.

As `tls.py` does for the serving pair: importing `cryptography` costs the long-running agent
~10 MB of resident memory for a job done once a year, so the agent runs this module as
`python -m wasmlet.nodeagent.csr` and reads its output.

- `request KEYFILE NODE`: write a new EC P-256 key (0600) and print a PEM request for
  `CN=system:node:NODE, O=system:nodes`, what the kubelet asks the
  `kubernetes.io/kube-apiserver-client-kubelet` signer for;
- `dates CERTFILE`: print the certificate's notBefore and notAfter as Unix seconds, and its subject.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def new_request(key_file: Path, node_name: str) -> bytes:
    """Make a key at `key_file` and return the PEM certificate request for the node's identity."""
    done = subprocess.run([sys.executable, "-m", "wasmlet.nodeagent.csr", "request", str(key_file), node_name],
                          check=True, capture_output=True)
    return done.stdout


def certificate_dates(cert_pem: bytes) -> tuple[float, float, str]:
    """(notBefore, notAfter, subject) of a PEM certificate; ValueError when it is not one."""
    done = subprocess.run([sys.executable, "-m", "wasmlet.nodeagent.csr", "dates", "-"], input=cert_pem,
                          capture_output=True)
    if done.returncode != 0:
        raise ValueError(done.stderr.decode(errors="replace").strip().splitlines()[-1:] or "not a certificate")
    answer = json.loads(done.stdout)
    return float(answer["notBefore"]), float(answer["notAfter"]), str(answer["subject"])


def _request(key_file: Path, node_name: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}")])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def _dates(pem: bytes) -> str:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    return json.dumps({"notBefore": cert.not_valid_before_utc.timestamp(),
                       "notAfter": cert.not_valid_after_utc.timestamp(), "subject": cert.subject.rfc4514_string()})


if __name__ == "__main__":
    command, target = sys.argv[1:3]
    if command == "request":
        sys.stdout.buffer.write(_request(Path(target), sys.argv[3]))
    else:
        sys.stdout.write(_dates(sys.stdin.buffer.read() if target == "-" else Path(target).read_bytes()))
