"""How kubelet API requests map to `nodes/<subresource>` attributes, and who a certificate names."""

from __future__ import annotations

import pytest

from wasmlet.nodeagent.kubeletauth import certificate_caller
from wasmlet.nodeagent.kubeletauthz import Caller, forbidden_message, subresources_for


@pytest.mark.parametrize(("path", "subresources"), [
    ("/containerLogs/default/p/main", ["proxy"]),
    ("/pods", ["pods", "proxy"]),
    ("/pods/", ["pods", "proxy"]),
    ("/podsx", ["proxy"]),
    ("/runningpods/", ["pods", "proxy"]),
    ("/healthz", ["healthz", "proxy"]),
    ("/metrics", ["metrics"]),
    ("/metrics/cadvisor", ["metrics"]),
    ("/stats/summary", ["stats"]),
    ("/logs/syslog", ["log"]),
    ("/exec/ns/p/c", ["proxy"]),
])  # fmt: skip
def test_paths_map_to_the_kubelets_subresources(path: str, subresources: list[str]) -> None:
    assert subresources_for(path) == subresources


def test_the_forbidden_message_is_the_kubelets() -> None:
    caller = Caller("system:serviceaccount:a:default")
    assert forbidden_message(caller, "get", ["pods", "proxy"]) == (
        "Forbidden (user=system:serviceaccount:a:default, verb=get, resource=nodes, subresource(s)=[pods proxy])\n")


def test_every_caller_is_in_system_authenticated_once() -> None:
    assert Caller("u", groups=("g",)).groups == ("g", "system:authenticated")
    assert Caller("u", groups=("system:authenticated",)).groups == ("system:authenticated",)


def test_a_certificate_names_its_user_by_cn_and_groups_by_o() -> None:
    peercert = {"subject": ((("organizationName", "system:masters"),), (("organizationName", "ops"),),
                            (("commonName", "kube-apiserver-kubelet-client"),))}
    caller = certificate_caller(peercert)
    assert caller == Caller("kube-apiserver-kubelet-client", groups=("system:masters", "ops"))
    assert certificate_caller({"subject": ((("organizationName", "x"),),)}) is None
