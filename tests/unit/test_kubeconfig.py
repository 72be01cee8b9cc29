"""Kubeconfigs read as kubectl reads them: merging, contexts, `*-data`, exec plugins, auth-providers."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.kube.config import ClusterConfig, ConfigError, load_config
from wasmlet.kube.credentials import Credentials
from wasmlet.kube.execplugin import ExecError

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def kubeconfig(path: Path, *, clusters: dict[str, Any] | None = None, users: dict[str, Any] | None = None,
               contexts: dict[str, Any] | None = None, current: str | None = None) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in (clusters or {}).items()],
        "users": [{"name": n, "user": u} for n, u in (users or {}).items()],
        "contexts": [{"name": n, "context": c} for n, c in (contexts or {}).items()],
    }
    if current:
        doc["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def plugin(tmp_path: Path, body: str, name: str = "plugin") -> Path:
    """An exec credential plugin: a Python script run by the test's interpreter."""
    script = tmp_path / name
    script.write_text(f"#!{sys.executable}\nimport json, os, sys, datetime\n{body}\n")
    script.chmod(0o755)
    return script


def exec_user(command: Path | str, api_version: str = "client.authentication.k8s.io/v1", **extra: Any) -> dict[str, Any]:
    return {"exec": {"apiVersion": api_version, "command": str(command), "interactiveMode": "Never", **extra}}


def one_context(tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> ClusterConfig:
    path = kubeconfig(tmp_path / "config", clusters={"c": cluster or {"server": "https://api:6443"}},
                      users={"u": user}, contexts={"ctx": {"cluster": "c", "user": "u"}}, current="ctx")
    return load_config(path)


def test_kubeconfig_files_merge_as_kubectl_merges_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "a" / "config", clusters={"c": {"server": "https://first:6443",
                                                                  "certificate-authority": "ca.crt"}},
                       contexts={"ctx": {"cluster": "c", "user": "u"}})
    second = kubeconfig(tmp_path / "b" / "config", clusters={"c": {"server": "https://second:6443"}},
                        users={"u": {"token": "from-b", "client-certificate": "client.crt"}},
                        contexts={"other": {"cluster": "c", "user": "u", "namespace": "ns2"}}, current="ctx")
    third = kubeconfig(tmp_path / "c" / "config", current="other")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}:{second}:{third}")
    config = load_config()
    assert config.server == "https://first:6443"  # the first file that names cluster c wins
    assert config.ca_file == str(tmp_path / "a" / "ca.crt")  # relative to the file it came from
    assert config.client_cert_file == str(tmp_path / "b" / "client.crt")
    assert config.token == "from-b"
    assert config.namespace == "default"  # current-context from the first file that sets one: ctx
    assert load_config(context="other").namespace == "ns2"


def test_an_unknown_context_is_named_with_the_known_ones(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", clusters={"c": {"server": "https://api"}},
                      contexts={"ctx": {"cluster": "c"}}, current="ctx")
    with pytest.raises(ConfigError, match=r"no context named 'nope' \(known: ctx\)"):
        load_config(path, "nope")


def test_data_fields_are_decoded_and_bad_base64_is_named(tmp_path: Path) -> None:
    data = base64.b64encode(PEM).decode()
    config = one_context(tmp_path, {"client-certificate-data": data, "client-key-data": data},
                         {"server": "https://api", "certificate-authority-data": data[:10] + "\n" + data[10:],
                          "tls-server-name": "kubernetes", "proxy-url": "http://proxy:3128"})
    assert config.ca_pem() == PEM and config.client_pair() == (PEM, PEM)
    assert (config.tls_server_name, config.proxy_url) == ("kubernetes", "http://proxy:3128")
    with pytest.raises(ConfigError, match="certificate-authority-data is not valid base64"):
        one_context(tmp_path, {}, {"server": "https://api", "certificate-authority-data": "%%%"})


@pytest.mark.parametrize(("user", "cluster", "message"), [
    ({"username": "a", "password": "b"}, {}, "basic authentication"),
    ({}, {"proxy-url": "socks5://p:1080"}, "only http:// and https:// proxies"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}}, {}, "apiVersion"),
    ({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}}, {}, "interactiveMode must be"),
    ({"auth-provider": {}}, {}, "auth-provider has no name"),
])
def test_unusable_users_and_clusters_are_refused_with_the_field(tmp_path: Path, user: dict[str, Any],
                                                                 cluster: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        one_context(tmp_path, user, {"server": "https://api", **cluster})


async def test_an_exec_plugin_gets_its_env_args_and_cluster_and_its_token_is_cached_until_expiry(tmp_path: Path) -> None:
    script = plugin(tmp_path, """
runs = os.environ["RUNS"]
count = (int(open(runs).read()) if os.path.exists(runs) else 0) + 1
open(runs, "w").write(str(count))
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["spec"]["cluster"]["server"] == "https://api:6443", info
assert sys.argv[1:] == ["--flag"], sys.argv
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=float(os.environ["TTL"]))
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": f"token-{count}", "expirationTimestamp": expiry.isoformat()}}))
""")
    runs = tmp_path / "runs"
    config = one_context(tmp_path, exec_user(script, args=["--flag"], provideClusterInfo=True,
                                             env=[{"name": "RUNS", "value": str(runs)}, {"name": "TTL", "value": "3600"}]),
                         {"server": "https://api:6443"})
    credentials = Credentials(config)
    first = await credentials.login()
    assert first.token == "token-1" and first.expiration is not None and first.expiration > dt.datetime.now(dt.UTC)
    assert (await credentials.login()).token == "token-1"  # cached: the plugin ran once
    assert (await credentials.refresh(first)).token == "token-2"  # refused (401): run again
    assert runs.read_text() == "2"


async def test_an_expired_exec_credential_is_fetched_again(tmp_path: Path) -> None:
    script = plugin(tmp_path, """
runs = os.environ["RUNS"]
count = (int(open(runs).read()) if os.path.exists(runs) else 0) + 1
open(runs, "w").write(str(count))
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": f"t{count}", "expirationTimestamp": "2000-01-01T00:00:00Z"}}))
""")
    runs = tmp_path / "runs"
    config = one_context(tmp_path, exec_user(script, "client.authentication.k8s.io/v1beta1",
                                             env=[{"name": "RUNS", "value": str(runs)}]))
    credentials = Credentials(config)
    assert (await credentials.login()).token == "t1"
    assert (await credentials.login()).token == "t2"


def _credential(api_version: str, status: str) -> str:
    """Plugin code printing an ExecCredential of this version with this status (a Python literal)."""
    return (f"print(json.dumps({{'apiVersion': 'client.authentication.k8s.io/{api_version}', "
            f"'kind': 'ExecCredential'{status}}}))")


@pytest.mark.parametrize(("body", "message"), [
    ("print('not json')", "decoding stdout"),
    ("sys.stderr.write('no session'); sys.exit(3)", "failed with exit code 3: no session"),
    (_credential("v1beta1", ", 'status': {'token': 't'}"),
     ("configured to use API version client.authentication.k8s.io/v1, plugin returned version "
      "client.authentication.k8s.io/v1beta1")),
    (_credential("v1", ""), "didn't return a status field"),
    (_credential("v1", ", 'status': {'clientCertificateData': 'x'}"), "only certificate or key"),
])
async def test_a_failing_exec_plugin_says_what_went_wrong(tmp_path: Path, body: str, message: str) -> None:
    credentials = Credentials(one_context(tmp_path, exec_user(plugin(tmp_path, body))))
    with pytest.raises(ExecError, match=message):
        await credentials.login()


async def test_a_missing_exec_plugin_names_the_executable_and_the_install_hint(tmp_path: Path) -> None:
    user = exec_user("wasmlet-no-such-plugin", installHint="install it with: apt install it")
    credentials = Credentials(one_context(tmp_path, user))
    with pytest.raises(ExecError, match="(?s)executable wasmlet-no-such-plugin not found.*apt install it"):
        await credentials.login()


async def test_a_relative_exec_command_is_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    plugin(tmp_path, "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential', "
                     "'status': {'token': 'relative'}}))", name="plugin.py")
    credentials = Credentials(one_context(tmp_path, exec_user("./plugin.py")))
    assert (await credentials.login()).token == "relative"


async def test_an_oidc_auth_provider_gives_its_id_token_and_expiry(tmp_path: Path) -> None:
    exp = int(dt.datetime.now(dt.UTC).timestamp()) + 3600
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp, "sub": "me"}).encode()).decode().rstrip("=")
    token = f"eyJhbGciOiJSUzI1NiJ9.{claims}.c2lnbmF0dXJl"
    user = {"auth-provider": {"name": "oidc", "config": {"client-id": "k", "id-token": token,
                                                         "idp-issuer-url": "https://issuer.invalid"}}}
    login = await Credentials(one_context(tmp_path, user)).login()
    assert login.token == token
    assert login.expiration == dt.datetime.fromtimestamp(exp, dt.UTC)


async def test_an_auth_provider_kubectl_dropped_is_refused_with_the_alternative(tmp_path: Path) -> None:
    credentials = Credentials(one_context(tmp_path, {"auth-provider": {"name": "azure", "config": {}}}))
    with pytest.raises(ConfigError, match="use the provider's exec credential plugin"):
        await credentials.login()


def test_in_cluster_credentials_come_after_kubeconfig_and_a_bare_url_needs_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    config = load_config("http://127.0.0.1:10550/")
    assert (config.server, config.token, config.ca_pem()) == ("http://127.0.0.1:10550", None, None)
