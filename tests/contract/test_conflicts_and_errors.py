"""Optimistic concurrency (behaviour 5) and error bodies shaped like the real ones (behaviour 6)."""

from __future__ import annotations

import pytest

from tests.contract.builders import configmap, pod, widget
from tests.contract.conftest import ContractClient
from tests.fixtures.kubeclient import ApiError

STALE = "the object has been modified; please apply your changes to the latest version and try again"


async def test_an_update_with_a_stale_resource_version_conflicts(api: ContractClient) -> None:
    created = await api.create("v1", "configmaps", api.namespace, configmap("cm"))
    await api.patch("v1", "configmaps", api.namespace, "cm", {"data": {"k": "v"}})
    with pytest.raises(ApiError) as error:
        await api.put("v1", "configmaps", api.namespace, "cm", {**created, "data": {"k": "other"}})
    assert error.value.status == 409 and error.value.reason == "Conflict"
    assert error.value.message == f'Operation cannot be fulfilled on configmaps "cm": {STALE}'


async def test_a_patch_carrying_a_stale_resource_version_conflicts(api: ContractClient, widgets: str) -> None:
    created = await api.create(widgets, "widgets", api.namespace, widget(widgets, "w"))
    await api.patch(widgets, "widgets", api.namespace, "w", {"spec": {"a": 1}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"a": 2}}
    with pytest.raises(ApiError) as error:
        await api.patch(widgets, "widgets", api.namespace, "w", stale)
    group = widgets.split("/")[0]
    assert error.value.status == 409
    assert error.value.message == f'Operation cannot be fulfilled on widgets.{group} "w": {STALE}'
    assert error.value.body["details"] == {"name": "w", "group": group, "kind": "widgets"}


async def test_a_put_carrying_another_uid_fails_its_precondition(api: ContractClient, widgets: str) -> None:
    other = "00000000-0000-0000-0000-000000000000"
    created = await api.create("v1", "configmaps", api.namespace, configmap("cm"))
    custom = await api.create(widgets, "widgets", api.namespace, widget(widgets, "w"))
    group = widgets.split("/")[0]
    for api_version, plural, obj, what, key in [
        ("v1", "configmaps", created, "configmaps", f"/registry/configmaps/{api.namespace}/cm"),
        (widgets, "widgets", custom, f"widgets.{group}", f"/registry/{group}/widgets/{api.namespace}/w"),
    ]:
        name = obj["metadata"]["name"]
        with pytest.raises(ApiError) as error:
            await api.put(api_version, plural, api.namespace, name, {**obj, "metadata": {**obj["metadata"], "uid": other}})
        assert error.value.status == 409 and error.value.reason == "Conflict"
        # The storage layer's words, etcd key included.
        assert error.value.message == (
            f'Operation cannot be fulfilled on {what} "{name}": StorageError: invalid object, Code: 4, Key: {key}, '
            f"ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {other}, "
            f"UID in object meta: {obj['metadata']['uid']}"
        )


async def test_a_patch_carrying_another_uid_is_invalid(api: ContractClient) -> None:
    await api.create("v1", "pods", api.namespace, pod("p"))
    other = "00000000-0000-0000-0000-000000000000"
    change = {"metadata": {"uid": other}, "status": {"phase": "Running"}}
    with pytest.raises(ApiError) as error:
        await api.patch("v1", "pods", api.namespace, "p", change, content_type="strategic", subresource="status")
    assert error.value.status == 422
    assert error.value.message == f'Pod "p" is invalid: metadata.uid: Invalid value: "{other}": field is immutable'
    assert (await api.get("v1", "pods", api.namespace, "p"))["status"]["phase"] == "Pending"


async def test_creating_an_existing_name_is_already_exists(api: ContractClient) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("cm"))
    with pytest.raises(ApiError) as error:
        await api.create("v1", "configmaps", api.namespace, configmap("cm"))
    assert error.value.body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'configmaps "cm" already exists', "reason": "AlreadyExists",
        "details": {"name": "cm", "kind": "configmaps"}, "code": 409,
    }  # fmt: skip


async def test_a_put_of_a_custom_resource_needs_a_resource_version(api: ContractClient, widgets: str) -> None:
    created = await api.create(widgets, "widgets", api.namespace, widget(widgets, "w"))
    unversioned = {**created, "metadata": {k: v for k, v in created["metadata"].items() if k != "resourceVersion"}}
    with pytest.raises(ApiError) as error:
        await api.put(widgets, "widgets", api.namespace, "w", unversioned)
    assert error.value.status == 422 and "must be specified for an update" in error.value.message


async def test_not_found_is_a_status_with_details(api: ContractClient) -> None:
    with pytest.raises(ApiError) as error:
        await api.get("v1", "pods", api.namespace, "missing")
    assert error.value.body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods "missing" not found', "reason": "NotFound",
        "details": {"name": "missing", "kind": "pods"}, "code": 404,
    }  # fmt: skip


async def test_invalid_names_the_failing_fields_in_causes(api: ContractClient) -> None:
    nameless = pod("")
    nameless["metadata"] = {}
    with pytest.raises(ApiError) as error:
        await api.create("v1", "pods", api.namespace, nameless)
    assert error.value.status == 422 and error.value.reason == "Invalid"
    assert error.value.message == 'Pod "" is invalid: metadata.name: Required value: name or generateName is required'
    assert error.value.body["details"]["kind"] == "Pod"
    assert error.value.body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"}
    ]


async def test_an_invalid_name_is_rejected_with_the_dns_rule(api: ContractClient) -> None:
    with pytest.raises(ApiError) as error:
        await api.create("v1", "configmaps", api.namespace, configmap("Not_Valid"))
    assert error.value.status == 422
    assert error.value.message.startswith('ConfigMap "Not_Valid" is invalid: metadata.name: '
                                          'Invalid value: "Not_Valid": a lowercase RFC 1123 subdomain')


async def test_a_bad_field_selector_is_a_bad_request(api: ContractClient) -> None:
    with pytest.raises(ApiError) as error:
        await api.list("v1", "pods", api.namespace, params={"fieldSelector": "spec.nope=1"})
    assert error.value.body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "field label not supported: spec.nope", "reason": "BadRequest", "code": 400,
    }  # fmt: skip


NO_RESOURCE = {
    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
    "message": "the server could not find the requested resource", "reason": "NotFound", "details": {}, "code": 404,
}  # fmt: skip


@pytest.mark.parametrize("path", ["/api/v1/things", "/api/v1/namespaces/default/things", "/apis/apps/v1/things",
                                  "/apis/apps/v9/deployments", "/api/v1/pods/p"])
async def test_an_unknown_resource_of_a_builtin_group_is_a_not_found_status(api: ContractClient, path: str) -> None:
    assert await api.request("GET", path) == (404, NO_RESOURCE)


async def test_a_path_no_api_group_serves_is_a_plain_text_404(api: ContractClient, widgets: str) -> None:
    group = widgets.split("/")[0]
    paths = ["/apis/nothing.contract.wasmlet.dev/v1/things", "/apis/nothing.contract.wasmlet.dev", f"/apis/{group}/v9/widgets",
             f"/apis/{group}/v1/things", f"/apis/{group}/v1/widgets/w", f"/apis/{widgets}/namespaces/{api.namespace}/things"]
    for path in paths:
        status, body = await api.request("GET", path)
        assert (path, status, body) == (path, 404, "404 page not found\n")
