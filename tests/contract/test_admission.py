"""Admission and Pod rules that the real API server enforces (behaviour 11)."""

from __future__ import annotations

import pytest

from tests.contract.builders import configmap, node, pod
from tests.contract.conftest import ContractClient, eventually
from tests.fixtures.kubeclient import ApiError

NOT_READY = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}


async def test_a_pod_naming_a_missing_runtime_class_is_rejected(api: ContractClient) -> None:
    missing = api.unique("contract-missing")
    with pytest.raises(ApiError) as error:
        await api.create("v1", "pods", api.namespace, pod("p", runtimeClassName=missing))
    assert error.value.status == 403 and error.value.reason == "Forbidden"
    assert error.value.message == f'pods "p" is forbidden: pod rejected: RuntimeClass "{missing}" not found'


async def test_a_runtime_class_scheduling_is_merged_into_the_pod(api: ContractClient) -> None:
    name = api.unique("contract-rc")
    api.owns("node.k8s.io/v1", "runtimeclasses", name)
    toleration = {"key": "example.com/wasm", "operator": "Exists", "effect": "NoSchedule"}
    runtime_class = {
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": "contract",
        "scheduling": {"nodeSelector": {"example.com/runtime": name}, "tolerations": [toleration]},
    }  # fmt: skip
    await api.create("node.k8s.io/v1", "runtimeclasses", None, runtime_class)
    created = await api.create("v1", "pods", api.namespace, pod("p", runtimeClassName=name, nodeSelector={"a": "b"}))
    assert created["spec"]["nodeSelector"] == {"a": "b", "example.com/runtime": name}
    assert toleration in created["spec"]["tolerations"]


async def test_a_pod_needs_its_service_account(api: ContractClient) -> None:
    with pytest.raises(ApiError) as error:
        await api.create("v1", "pods", api.namespace, pod("p", serviceAccountName="nobody"))
    assert error.value.status == 403 and error.value.reason == "Forbidden"
    assert error.value.message == (
        f'pods "p" is forbidden: error looking up service account {api.namespace}/nobody: serviceaccount "nobody" not found'
    )


async def test_namespaced_objects_need_an_existing_namespace(api: ContractClient) -> None:
    missing = api.unique("contract-missing")
    with pytest.raises(ApiError) as error:
        await api.create("v1", "configmaps", missing, configmap("cm"))
    assert error.value.status == 404 and error.value.message == f'namespaces "{missing}" not found'


async def test_pods_tolerate_not_ready_and_unreachable_nodes_for_300_seconds(api: ContractClient) -> None:
    own = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
    defaulted = await api.create("v1", "pods", api.namespace, pod("plain"))
    kept = await api.create("v1", "pods", api.namespace, pod("own", tolerations=[own]))
    assert NOT_READY in defaulted["spec"]["tolerations"] and UNREACHABLE in defaulted["spec"]["tolerations"]
    assert kept["spec"]["tolerations"] == [own, UNREACHABLE]


async def test_pods_get_the_api_server_defaults(api: ContractClient) -> None:
    body = pod("p", image="registry.example/wasm/app")
    body["spec"]["containers"].append({"name": "tagged", "image": "registry.example/wasm/app:1.0"})
    body["spec"]["containers"].append({"name": "latest", "image": "registry.example/wasm/app:latest"})
    spec = (await api.create("v1", "pods", api.namespace, body))["spec"]
    assert (spec["serviceAccountName"], spec["schedulerName"], spec["restartPolicy"]) == ("default", "default-scheduler", "Always")
    assert (spec["terminationGracePeriodSeconds"], spec["dnsPolicy"], spec["enableServiceLinks"]) == (30, "ClusterFirst", True)
    assert [c["imagePullPolicy"] for c in spec["containers"]] == ["Always", "IfNotPresent", "Always"]
    assert {(c["terminationMessagePath"], c["terminationMessagePolicy"]) for c in spec["containers"]} == {("/dev/termination-log", "File")}


async def test_pods_get_a_projected_service_account_token_volume(api: ContractClient) -> None:
    spec = (await api.create("v1", "pods", api.namespace, pod("p")))["spec"]
    volume = next(v for v in spec["volumes"] if v["name"].startswith("kube-api-access-"))
    # OpenShift's fork of kube-apiserver adds a fourth source, its service CA; upstream has three.
    sources = [next(iter(source)) for source in volume["projected"]["sources"]
               if source.get("configMap", {}).get("name") != "openshift-service-ca.crt"]
    mount = {"name": volume["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    assert sources == ["serviceAccountToken", "configMap", "downwardAPI"]
    assert mount in spec["containers"][0]["volumeMounts"]


async def test_a_pod_spec_is_immutable_but_for_images_deadlines_and_added_tolerations(api: ContractClient) -> None:
    await api.create("v1", "pods", api.namespace, pod("p"))
    extra = {"key": "example.com/extra", "operator": "Exists"}
    new_image = {"spec": {"containers": [{"name": "main", "image": "registry.example/wasm/app:2.0"}]}}
    image = await api.patch("v1", "pods", api.namespace, "p", new_image, content_type="strategic")
    deadline = await api.patch("v1", "pods", api.namespace, "p", {"spec": {"activeDeadlineSeconds": 60}})
    tolerations = await api.patch("v1", "pods", api.namespace, "p", {"spec": {"tolerations": [*deadline["spec"]["tolerations"], extra]}})
    assert image["spec"]["containers"][0]["image"] == "registry.example/wasm/app:2.0"
    assert extra in tolerations["spec"]["tolerations"]
    for change in ({"restartPolicy": "Never"}, {"nodeName": "contract-elsewhere"}, {"activeDeadlineSeconds": 120}):
        with pytest.raises(ApiError) as error:
            await api.patch("v1", "pods", api.namespace, "p", {"spec": change})
        assert error.value.status == 422 and error.value.reason == "Invalid"
        if "activeDeadlineSeconds" not in change:
            assert error.value.message.startswith('Pod "p" is invalid: spec: Forbidden: pod updates may not change fields other than')


async def test_binding_assigns_a_node_once(api: ContractClient) -> None:
    await api.create("v1", "pods", api.namespace, pod("p", node=None))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "contract-n1"}}
    answer = await api.create("v1", "pods", api.namespace, binding, name="p", subresource="binding")
    bound = await api.get("v1", "pods", api.namespace, "p")
    with pytest.raises(ApiError) as error:
        await api.create("v1", "pods", api.namespace, {**binding, "target": {"kind": "Node", "name": "contract-n2"}},
                         name="p", subresource="binding")
    assert answer["status"] == "Success" and bound["spec"]["nodeName"] == "contract-n1"
    assert {"type": "PodScheduled", "status": "True"}.items() <= bound["status"]["conditions"][0].items()
    assert error.value.status == 409
    assert error.value.message == 'Operation cannot be fulfilled on pods/binding "p": pod p is already assigned to node "contract-n1"'


async def test_nodes_are_cluster_scoped_and_leases_live_in_coordination(api: ContractClient) -> None:
    name = api.unique("contract-node")
    api.owns("v1", "nodes", name)
    created = await api.create("v1", "nodes", None, node(name))
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
             "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}}
    renewed = await api.create("coordination.k8s.io/v1", "leases", api.namespace, lease)
    status, _ = await api.request("GET", f"/api/v1/namespaces/{api.namespace}/nodes/{name}")
    assert "namespace" not in created["metadata"] and status == 404
    assert renewed["spec"]["holderIdentity"] == name


async def test_a_new_node_is_tainted_not_ready_until_it_reports_ready(api: ContractClient) -> None:
    name = api.unique("contract-node")
    api.owns("v1", "nodes", name)
    created = await api.create("v1", "nodes", None, node(name))
    assert created["spec"]["taints"][-1] == {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
    now = created["metadata"]["creationTimestamp"]
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready",
             "lastHeartbeatTime": now, "lastTransitionTime": now}
    await api.patch("v1", "nodes", None, name, {"status": {"conditions": [ready]}}, subresource="status")

    async def condition_taints() -> set[str] | None:
        taints = (await api.get("v1", "nodes", None, name))["spec"].get("taints") or []
        keys = {t["key"] for t in taints if t["key"].startswith("node.kubernetes.io/")}
        return keys if keys == {"node.kubernetes.io/unschedulable"} else None

    # The node lifecycle controller: Ready drops not-ready; the cordon (spec.unschedulable) adds its taint.
    assert await eventually(condition_taints) == {"node.kubernetes.io/unschedulable"}
