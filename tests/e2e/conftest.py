"""The end-to-end tier: a disposable real cluster, named by WASMLET_E2E_KUBECONFIG and no other.

tests/conftest.py collects this folder only when the variable is set. Every client and every
process the journey starts is given that kubeconfig explicitly; `$KUBECONFIG` pointing anywhere
else, or a variable naming no file, stops the run before anything touches a cluster, and the
processes get a private HOME so `~/.kube/config` is never read.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest
import yaml

E2E_VARIABLE = "WASMLET_E2E_KUBECONFIG"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def e2e_kubeconfig() -> Path:
    """The one kubeconfig these tests may use (absolute, existing, with a current context)."""
    named = os.environ.get(E2E_VARIABLE, "")
    path = Path(named).expanduser().resolve()
    if not named or not path.is_file():
        pytest.fail(f"{E2E_VARIABLE}={named!r} names no kubeconfig file", pytrace=False)
    other = os.environ.get("KUBECONFIG")
    if other and Path(other).expanduser().resolve() != path:
        pytest.fail(f"KUBECONFIG={other} differs from {E2E_VARIABLE}={named}: the e2e tests use only the "
                    f"cluster {E2E_VARIABLE} names; unset KUBECONFIG or make them equal", pytrace=False)
    config = yaml.safe_load(path.read_text()) or {}
    if not config.get("current-context"):
        pytest.fail(f"{path} has no current-context", pytrace=False)
    return path


@pytest.fixture(scope="session")
def run_id() -> str:
    """Names of everything a run creates carry this, so runs never collide and cleanup is exact."""
    return f"e2e-{secrets.token_hex(3)}"


def cluster_ca(kubeconfig: Path, work: Path) -> Path | None:
    """The CA of the kubeconfig's current cluster, as a file (written into `work` when the
    kubeconfig carries it as data). It signs the API server's kubelet-client certificate on
    kubeadm-style clusters (kind included): the agent's client CA."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    if cluster.get("certificate-authority-data"):
        path = work / "cluster-ca.crt"
        path.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        return path
    if cluster.get("certificate-authority"):
        return (kubeconfig.parent / cluster["certificate-authority"]).resolve()
    return None
