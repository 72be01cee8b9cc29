"""Least privilege, checked both ways: the chart grants each component exactly what it uses.

What a component uses is derived from its code: every `KubeClient` verb called on a
`wasmlet.kube.resources` constant (and every Reflector, which lists and watches), found by an
AST scan of the component's package, plus what kopf does for the handlers the operator
registers (read from the registry itself) and kopf's own fixed needs. The tables below say why
each grant exists; the tests fail when
- the code starts to use a resource or verb the table (and so the chart) does not grant,
- the table grants something the code no longer uses (unless listed as ahead of the code),
- the rendered ClusterRoles/Roles differ from the table in any rule or scope,
- a component's code reaches the API in a way the scanner does not understand.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import wasmlet.kube.resources as kube_resources
from wasmlet.kube.resources import Resource
from wasmlet.operator.handlers import build_registry

from tests.deploy.chart import NAMESPACE, ROOT, one, render

Obj = dict[str, Any]
Use = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)
Grant = tuple[str, str, str, str]  # (scope, apiGroup, resource, verb); scope: "cluster" or a namespace

OPERATOR_PACKAGE = ROOT / "operator" / "src" / "wasmlet" / "operator"
AGENT_PACKAGE = ROOT / "nodeagent" / "src" / "wasmlet" / "nodeagent"

# KubeClient method → RBAC verb.
VERBS = {"get": "get", "list": "list", "watch": "watch", "create": "create", "replace": "update",
         "patch": "patch", "delete": "delete"}

# -- what each component is granted, and why ---------------------------------------------------

# The agent runs as `system:node:<name>` (TLS bootstrap): what it does to its Node, Lease and Pods
# is allowed by kube-apiserver's Node authorizer (its bootstrap-policy NodeRules, narrowed by the
# node graph and NodeRestriction), not by the chart. Each use of the code must be one of these.
NODE_AUTHORIZER_ALLOWS: dict[Use, str] = {
    ("", "nodes", "create"): "register its wasm Node (NodeRestriction: its own name only)",
    ("", "nodes", "patch"): "re-register after a restart: labels that differ, missing taints",
    ("", "nodes", "get"): "its Node's uid for the Lease's ownerReference",
    ("", "nodes/status", "patch"): "NodeStatus",
    ("", "pods", "list"): "the Pods bound to its node (reflector, fieldSelector spec.nodeName)",
    ("", "pods", "watch"): "the Pods bound to its node (reflector, fieldSelector spec.nodeName)",
    ("", "pods", "delete"): "final deletion (grace 0, UID precondition); stale mirror Pods",
    ("", "pods", "create"): "mirror Pods of static Pods (mixed mode), as the kubelet creates them",
    ("", "pods/status", "patch"): "Pod status",
    ("", "events", "create"): "Pod events",
    ("", "events", "patch"): "a repeated Pod event's count (client-go's correlator)",
    ("", "configmaps", "get"): "ConfigMaps its Pods reference, read behind KubeEdge's MetaServer",
    ("", "configmaps", "list"): "ConfigMaps its Pods reference (env, volumes, the module's volume): a watch each, by name",
    ("", "configmaps", "watch"): "ConfigMaps its Pods reference (env, volumes, the module's volume): a watch each, by name",
    ("", "secrets", "get"): "Secrets its Pods reference, read behind KubeEdge's MetaServer",
    ("", "secrets", "list"): "Secrets its Pods reference (env, volumes, imagePullSecrets): a watch each, by name",
    ("", "secrets", "watch"): "Secrets its Pods reference (env, volumes, imagePullSecrets): a watch each, by name",
    ("", "persistentvolumeclaims", "get"): "the claims its Pods' volumes name (the node graph's pod → claim)",
    ("", "persistentvolumes", "get"): "the PersistentVolume a claim is bound to (claim → volume)",
    ("coordination.k8s.io", "leases", "get"): "its node Lease (kube-node-lease)",
    ("coordination.k8s.io", "leases", "create"): "its node Lease (kube-node-lease)",
    ("coordination.k8s.io", "leases", "update"): "renewing its node Lease",
    ("authentication.k8s.io", "tokenreviews", "create"): "authenticating kubelet API callers",
    ("authorization.k8s.io", "subjectaccessreviews", "create"): "authorizing kubelet API callers",
}
# What the chart grants the agent's ServiceAccount: TLS bootstrap only.
AGENT_GRANTS: dict[Grant, str] = {
    ("cluster", "certificates.k8s.io", "certificatesigningrequests", "create"): "request its node certificate",
    ("cluster", "certificates.k8s.io", "certificatesigningrequests", "get"): "wait for it to be signed",
    ("cluster", "certificates.k8s.io", "certificatesigningrequests/nodeclient", "create"):
        "the controller manager approves what such a requester asks for (bootstrap policy's nodeclient role)",
}
# ClusterRoles of kube-apiserver's bootstrap policy the chart binds, by the rules they hold.
BOOTSTRAP_POLICY: dict[str, list[Obj]] = {
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient": [
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/nodeclient"],
         "verbs": ["create"]}],
}
# Grants the code does not call but the API server checks on its behalf.
AGENT_GRANTS_NOT_CALLED = {("certificates.k8s.io", "certificatesigningrequests/nodeclient", "create")}
# Granted before the code uses it, with the reason; each entry must name planned work.
AGENT_AHEAD_OF_CODE: dict[Use, str] = {}


def operator_grants(watch_namespace: str | None) -> dict[Grant, str]:
    """The operator's grants, cluster-wide or with its namespaced resources in one namespace."""
    scope = watch_namespace or "cluster"
    peerings = "kopfpeerings" if watch_namespace else "clusterkopfpeerings"
    grants: dict[Grant, str] = {
        (scope, "wasmlet.dev", "wasmworkloads", "list"): "kopf's event handler fills the workload cache",
        (scope, "wasmlet.dev", "wasmworkloads", "watch"): "kopf's event handler fills the workload cache",
        (scope, "wasmlet.dev", "wasmworkloads/status", "patch"): "the aggregated status",
        (scope, "", "pods", "list"): "the Pod cache (reflector)",
        (scope, "", "pods", "watch"): "the Pod cache (reflector)",
        (scope, "", "pods", "create"): "placing replicas",
        (scope, "", "pods", "delete"): "scaling down, updates, lost nodes",
        (scope, "", "services", "list"): "the Service cache (reflector): HTTP workloads' Services and name conflicts",
        (scope, "", "services", "watch"): "the Service cache (reflector): HTTP workloads' Services and name conflicts",
        (scope, "", "services", "create"): "the Service of an HTTP workload (spec.http.service)",
        (scope, "", "services", "patch"): "setting back a drifted Service of an HTTP workload",
        (scope, "", "services", "delete"): "removing the Service when spec.http.service turns false",
        (scope, "", "events", "create"): "workload events (and kopf's)",
        (scope, "kopf.dev", peerings, "create"): "the peering object, when it is missing",
        (scope, "kopf.dev", peerings, "list"): "kopf's peering; the operator's own gate",
        (scope, "kopf.dev", peerings, "watch"): "kopf's peering; the operator's own gate",
        (scope, "kopf.dev", peerings, "patch"): "kopf's peering keep-alive",
        ("cluster", "", "nodes", "get"): "confirming a lost node",
        ("cluster", "", "nodes", "list"): "the wasm Node cache (reflector)",
        ("cluster", "", "nodes", "watch"): "the wasm Node cache (reflector)",
        ("cluster", "apiextensions.k8s.io", "customresourcedefinitions", "list"): "kopf's resource discovery",
        ("cluster", "apiextensions.k8s.io", "customresourcedefinitions", "watch"): "kopf's resource discovery",
    }
    if watch_namespace:
        grants[("cluster", "", "namespaces", "list")] = "kopf checks the watched namespace exists"
        grants[("cluster", "", "namespaces", "watch")] = "kopf follows the watched namespace"
    return grants


def kopf_fixed_needs(watch_namespace: str | None) -> set[Use]:
    """What kopf does whatever the handlers: discover resources through CRDs, post events, keep
    its peering object alive (list, watch, patch; a KopfPeering in the watched namespace, else a
    ClusterKopfPeering), and in namespaced mode list and watch Namespaces
    (kopf/_core/reactor/observation.py, kopf/_core/engines/peering.py)."""
    peerings = "kopfpeerings" if watch_namespace else "clusterkopfpeerings"
    needs = {("apiextensions.k8s.io", "customresourcedefinitions", "list"),
             ("apiextensions.k8s.io", "customresourcedefinitions", "watch"), ("", "events", "create"),
             ("kopf.dev", peerings, "list"), ("kopf.dev", peerings, "watch"), ("kopf.dev", peerings, "patch")}
    if watch_namespace:
        needs |= {("", "namespaces", "list"), ("", "namespaces", "watch")}
    return needs


# The peering resource the operator does not use in a mode (its code handles both).
OTHER_MODE = {None: ("kopf.dev", "kopfpeerings"), "namespaced": ("kopf.dev", "clusterkopfpeerings")}


# -- what the code uses ------------------------------------------------------------------------


@dataclass
class Scan:
    uses: set[Use]
    unexplained: list[str]


def scan_package(package: Path) -> Scan:
    """Every API use of the package's modules, by AST."""
    constants = {name: value for name, value in vars(kube_resources).items() if isinstance(value, Resource)}
    scan = Scan(set(), [])
    for path in sorted(package.rglob("*.py")):
        _scan_module(path, constants, scan)
    return scan


def _scan_module(path: Path, constants: dict[str, Resource], scan: Scan) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    local = {alias.asname or alias.name: constants[alias.name]
             for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == kube_resources.__name__
             for alias in node.names if alias.name in constants}
    explained: set[int] = set()
    where = path.relative_to(ROOT) if ROOT in path.parents else path
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(("/api/", "/apis/")):
            scan.unexplained.append(f"{where}:{node.lineno}: a raw API path {node.value!r}")
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "Resource":
            scan.unexplained.append(f"{where}:{node.lineno}: a Resource defined outside wasmlet.kube.resources")
        args = [a for a in node.args if isinstance(a, ast.Name) and a.id in local]
        if not args:
            continue
        resource = local[args[0].id]
        explained.update(id(a) for a in args)
        subresource = next((k.value.value for k in node.keywords if k.arg == "subresource"
                            and isinstance(k.value, ast.Constant)), None)
        plural = f"{resource.plural}/{subresource}" if subresource else resource.plural
        verb = VERBS.get(name.lstrip("_"))  # `self._list(PODS, ...)`: a wrapper of the verb it is named after
        if name == "Reflector":
            scan.uses |= {(resource.group, plural, "list"), (resource.group, plural, "watch")}
        elif verb is not None:
            scan.uses.add((resource.group, plural, verb))
        else:
            scan.unexplained.append(f"{where}:{node.lineno}: {resource.plural} passed to {name}()")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in local and id(node) not in explained:
            scan.unexplained.append(f"{where}:{node.lineno}: {node.id} used outside a KubeClient call")


def kopf_handler_uses() -> tuple[set[Use], list[str]]:
    """What kopf does for the operator's registered handlers: watch what they watch; patch
    (annotations, finalizers) what its change handlers, daemons and timers follow."""
    registry = build_registry()
    plurals = {(r.group, name): r.plural for r in vars(kube_resources).values() if isinstance(r, Resource)
               for name in (r.plural, r.kind, r.kind.lower())}
    uses: set[Use] = set()
    unexplained = [f"webhook handler {h.id}" for h in registry._webhooks.get_all_handlers()]
    # kopf's registries are private attributes; kopf's own resource observer reads them the same way.
    for handlers, patches in ((registry._watching, False), (registry._indexing, False),
                              (registry._changing, True), (registry._spawning, True)):
        for handler in handlers.get_all_handlers():
            selector = handler.selector
            group = (selector.group if selector else None) or ""
            plural = plurals.get((group, (selector.plural or selector.any_name) if selector else None))
            if plural is None:
                unexplained.append(f"kopf handler {handler.id} follows {selector}, not one wasmlet.kube resource")
                continue
            uses |= {(group, plural, "list"), (group, plural, "watch")}
            if patches:
                uses.add((group, plural, "patch"))
    return uses, unexplained


def operator_uses(watch_namespace: str | None) -> Scan:
    """The operator's uses in one mode: cluster-wide (None) or namespaced."""
    scan = scan_package(OPERATOR_PACKAGE)
    kopf_uses, unexplained = kopf_handler_uses()
    other = OTHER_MODE["namespaced" if watch_namespace else None]
    uses = {use for use in scan.uses | kopf_uses if use[:2] != other} | kopf_fixed_needs(watch_namespace)
    return Scan(uses, scan.unexplained + unexplained)


# -- what the chart grants ---------------------------------------------------------------------


def granted(objects: list[Obj], service_account: str) -> set[Grant]:
    """The rules bound to the ServiceAccount, flattened to (scope, group, resource, verb)."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objects if o["kind"] in ("ClusterRole", "Role")}
    grants: set[Grant] = set()
    for binding in (o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        subjects = {(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]}
        if ("ServiceAccount", service_account, NAMESPACE) not in subjects:
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace") or "cluster"
        found = roles.get((ref["kind"], None if ref["kind"] == "ClusterRole" else scope, ref["name"]))
        rules = found["rules"] if found is not None else BOOTSTRAP_POLICY[ref["name"]]
        for rule in rules:
            assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb), rule
                        grants.add((scope, group, resource, verb))
    return grants


def service_account_of(objects: list[Obj], kind: str) -> str:
    return str(one(objects, kind)["spec"]["template"]["spec"]["serviceAccountName"])


# -- the tests ---------------------------------------------------------------------------------


def test_the_scanner_understands_every_api_use_of_the_components() -> None:
    unexplained = scan_package(AGENT_PACKAGE).unexplained + operator_uses(None).unexplained
    assert not unexplained, "teach tests/deploy/test_rbac.py these API uses:\n" + "\n".join(unexplained)


def test_the_scanner_finds_the_calls_it_is_meant_to_find() -> None:
    uses = scan_package(AGENT_PACKAGE).uses
    assert ("", "pods/status", "patch") in uses and ("coordination.k8s.io", "leases", "update") in uses
    assert ("", "pods", "watch") in uses  # through the Reflector


def test_the_scanner_reports_uses_it_cannot_classify(tmp_path: Path) -> None:
    (tmp_path / "component.py").write_text(
        "from wasmlet.kube.resources import PODS, SECRETS as S\n"
        "async def f(api, helper):\n"
        "    await api.replace(S, {})\n"
        "    await helper(PODS)\n"
        "    kinds = [PODS]\n"
        "    await api.request('GET', '/api/v1/pods')\n")
    scan = scan_package(tmp_path)
    assert scan.uses == {("", "secrets", "update")}
    assert sorted(line.split(": ", 1)[1] for line in scan.unexplained) == [
        "PODS used outside a KubeClient call", "a raw API path '/api/v1/pods'", "pods passed to helper()"]


def test_the_agent_uses_nothing_the_node_authorizer_and_its_bootstrap_grants_do_not_allow() -> None:
    used = scan_package(AGENT_PACKAGE).uses
    bootstrap = {(group, resource, verb) for _, group, resource, verb in AGENT_GRANTS}
    allowed = set(NODE_AUTHORIZER_ALLOWS) | bootstrap
    assert used <= allowed, (f"the agent now uses {sorted(used - allowed)}: a node identity may not, unless the "
                             "Node authorizer allows it (NODE_AUTHORIZER_ALLOWS) or TLS bootstrap needs it")


def test_the_agent_is_granted_nothing_it_does_not_use() -> None:
    used = scan_package(AGENT_PACKAGE).uses
    table = {(group, resource, verb) for _, group, resource, verb in AGENT_GRANTS} - AGENT_GRANTS_NOT_CALLED
    assert table - used == set(AGENT_AHEAD_OF_CODE), "drop grants the agent no longer needs"
    assert not used & set(AGENT_AHEAD_OF_CODE), "the code uses it now: drop it from AGENT_AHEAD_OF_CODE"
    assert set(NODE_AUTHORIZER_ALLOWS) <= used, "drop what the agent no longer does from NODE_AUTHORIZER_ALLOWS"


def test_the_agents_service_account_reads_no_secret_and_patches_no_node() -> None:
    objects = render()
    resources = {resource for _, _, resource, _ in granted(objects, service_account_of(objects, "DaemonSet"))}
    assert resources == {"certificatesigningrequests", "certificatesigningrequests/nodeclient"}


def test_with_an_api_server_url_the_agent_gets_no_rbac() -> None:
    objects = render({"agent": {"apiServer": "http://127.0.0.1:10550"}})
    assert granted(objects, service_account_of(objects, "DaemonSet")) == set()


@pytest.mark.parametrize("values", [{}, {"crds": {"enabled": False}}, {"namespace": {"create": True}}])
def test_the_chart_grants_the_agent_exactly_its_table(values: Obj) -> None:
    objects = render(values)
    assert granted(objects, service_account_of(objects, "DaemonSet")) == set(AGENT_GRANTS)


@pytest.mark.parametrize("watch_namespace", [None, "apps"])
def test_the_operator_uses_exactly_what_it_is_granted(watch_namespace: str | None) -> None:
    used = operator_uses(watch_namespace).uses
    table = {(group, resource, verb) for _, group, resource, verb in operator_grants(watch_namespace)}
    assert used <= table, f"the operator now uses {sorted(used - table)}: grant it in operator-rbac.yaml and here"
    assert table <= used, f"the operator no longer uses {sorted(table - used)}: drop the grants"


@pytest.mark.parametrize("watch_namespace", [None, "apps"])
def test_the_chart_grants_the_operator_exactly_its_table(watch_namespace: str | None) -> None:
    objects = render({"operator": {"watchNamespace": watch_namespace or ""}})
    assert granted(objects, service_account_of(objects, "Deployment")) == set(operator_grants(watch_namespace))


def test_the_plain_manifests_grant_the_same_as_the_chart() -> None:
    import yaml

    manifests = [doc for path in sorted((ROOT / "manifests").glob("*.yaml"))
                 for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert granted(manifests, service_account_of(manifests, "DaemonSet")) == set(AGENT_GRANTS)
    assert granted(manifests, service_account_of(manifests, "Deployment")) == set(operator_grants(None))
