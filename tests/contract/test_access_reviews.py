"""SubjectAccessReviews: how the agent's kubelet API asks who may read logs, Pods and metrics.

The agent sends the kubelet's review (resource `nodes`, subresource by path, the node's name)
and acts on `status.allowed`. Pinned: RBAC bindings decide it, `system:masters` is allowed
everything, the bootstrap role `system:kubelet-api-admin` grants every kubelet subresource, and
another namespace's ServiceAccount is not allowed. Every review carries `system:authenticated`,
as the kubelet's authenticator adds it to every caller (an OpenShift-built kube-apiserver
refuses `proxy` to a review without it: "proxy subresource changed to unsafeproxy").
"""

from __future__ import annotations

from typing import Any

from tests.contract.conftest import ContractClient, eventually

RBAC = "rbac.authorization.k8s.io/v1"
AUTHENTICATED = "system:authenticated"


def node_review(user: str, subresource: str, groups: tuple[str, ...] = (), node: str = "wasm-node-1") -> dict[str, Any]:
    """The review the kubelet sends for a request on its API."""
    return {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": [*groups, AUTHENTICATED],
                 "resourceAttributes": {"verb": "get", "group": "", "version": "v1", "resource": "nodes",
                                        "subresource": subresource, "name": node}},
    }  # fmt: skip


async def allowed(api: ContractClient, review: dict[str, Any]) -> bool:
    answer = await api.create("authorization.k8s.io/v1", "subjectaccessreviews", None, review)
    assert answer["kind"] == "SubjectAccessReview"
    return bool(answer["status"]["allowed"])


async def test_a_service_account_without_a_binding_may_not_read_a_nodes_logs_or_pods(api: ContractClient) -> None:
    user = f"system:serviceaccount:{api.namespace}:default"
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{api.namespace}")
    for subresource in ("proxy", "pods", "log", "metrics", "stats"):
        assert not await allowed(api, node_review(user, subresource, groups)), subresource


async def test_the_privileged_group_may_read_everything_of_a_node(api: ContractClient) -> None:
    review = node_review("kube-apiserver-kubelet-client", "proxy", ("system:masters",))
    assert await allowed(api, review)


async def test_kubelet_api_admin_bound_to_a_service_account_grants_each_kubelet_subresource(
        api: ContractClient) -> None:
    account = api.unique("reader")
    binding = api.unique("wasmlet-contract-kubelet-reader")
    await api.create(RBAC, "clusterrolebindings", None, {
        "apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kubelet-api-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": api.namespace}],
    })  # fmt: skip
    api.owns(RBAC, "clusterrolebindings", binding)
    user = f"system:serviceaccount:{api.namespace}:{account}"
    # The RBAC authorizer reads bindings from an informer: a new one counts within moments.
    assert await eventually(lambda: allowed(api, node_review(user, "proxy")))
    for subresource in ("pods", "log", "metrics", "stats", "healthz"):
        assert await allowed(api, node_review(user, subresource)), subresource
    other = f"system:serviceaccount:{api.namespace}:default"
    assert not await allowed(api, node_review(other, "proxy"))


async def test_a_role_binding_grants_only_in_its_namespace(api: ContractClient) -> None:
    await api.create(RBAC, "roles", api.namespace, {
        "apiVersion": RBAC, "kind": "Role", "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}],
    })  # fmt: skip
    await api.create(RBAC, "rolebindings", api.namespace, {
        "apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "User", "name": "wasmlet-contract-reader", "apiGroup": "rbac.authorization.k8s.io"}],
    })  # fmt: skip

    def review(namespace: str, subresource: str) -> dict[str, Any]:
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": "wasmlet-contract-reader",
                         "resourceAttributes": {"namespace": namespace, "verb": "get", "resource": "pods",
                                                "subresource": subresource, "name": "p"}}}

    assert await eventually(lambda: allowed(api, review(api.namespace, "log")))
    assert not await allowed(api, review("default", "log"))
    assert not await allowed(api, review(api.namespace, "exec"))
