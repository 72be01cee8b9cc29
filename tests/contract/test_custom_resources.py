"""CRDs become servable, discoverable resources with status and scale subresources (behaviour 12)."""

from __future__ import annotations

from tests.contract.builders import widget
from tests.contract.conftest import SETTLE_TIMEOUT, ContractClient, eventually


async def test_a_crd_makes_its_resource_discoverable_with_verbs_and_subresources(api: ContractClient, widgets: str) -> None:
    group = widgets.split("/")[0]
    status, listing = await api.request("GET", f"/apis/{widgets}")
    resources = {r["name"]: r for r in listing["resources"]}
    main, status_sub, scale_sub = resources["widgets"], resources["widgets/status"], resources["widgets/scale"]
    assert status == 200 and listing["groupVersion"] == widgets
    assert (main["kind"], main["namespaced"], main["singularName"]) == ("Widget", True, "widget")
    assert {"list", "watch", "get", "create", "update", "patch", "delete", "deletecollection"} <= set(main["verbs"])
    assert main["shortNames"] == ["wdg"] and main["categories"] == ["contract"]
    assert status_sub["kind"] == "Widget" and set(status_sub["verbs"]) == {"get", "patch", "update"}
    assert (scale_sub["group"], scale_sub["version"], scale_sub["kind"]) == ("autoscaling", "v1", "Scale")
    _, groups = await api.request("GET", "/apis")
    assert any(g["name"] == group and g["preferredVersion"]["version"] == "v1" for g in groups["groups"])


async def test_kopf_can_find_crds_with_list_and_watch(api: ContractClient) -> None:
    _, listing = await api.request("GET", "/apis/apiextensions.k8s.io/v1")
    crds = next(r for r in listing["resources"] if r["name"] == "customresourcedefinitions")
    assert crds["namespaced"] is False and {"list", "watch"} <= set(crds["verbs"])


async def test_custom_resources_are_served_after_their_crd(api: ContractClient, widgets: str) -> None:
    created = await api.create(widgets, "widgets", api.namespace, widget(widgets, "w", color="blue"))
    fetched = await api.get(widgets, "widgets", api.namespace, "w")
    listed = await api.list(widgets, "widgets", api.namespace)
    assert created["kind"] == "Widget" and fetched["spec"] == {"color": "blue", "mode": "auto"}
    assert listed["kind"] == "WidgetList" and [i["metadata"]["name"] for i in listed["items"]] == ["w"]


async def test_the_scale_subresource_maps_replicas_and_the_selector(api: ContractClient, widgets: str) -> None:
    await api.create(widgets, "widgets", api.namespace, widget(widgets, "w", replicas=2))
    await api.patch(widgets, "widgets", api.namespace, "w", {"status": {"replicas": 1, "selector": "app=w"}}, subresource="status")
    scale = await api.get(widgets, "widgets", api.namespace, "w", subresource="scale")
    put = await api.put(widgets, "widgets", api.namespace, "w", {**scale, "spec": {"replicas": 5}}, subresource="scale")
    patched = await api.patch(widgets, "widgets", api.namespace, "w", {"spec": {"replicas": 3}}, subresource="scale")
    stored = await api.get(widgets, "widgets", api.namespace, "w")
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 1, "selector": "app=w"}
    assert put["spec"] == {"replicas": 5} and patched["spec"] == {"replicas": 3}
    assert stored["spec"]["replicas"] == 3 and stored["metadata"]["generation"] == 3


async def test_deleting_a_crd_deletes_its_resources_and_stops_serving_them(api: ContractClient, widgets: str) -> None:
    await api.create(widgets, "widgets", api.namespace, widget(widgets, "w"))
    await api.delete("apiextensions.k8s.io/v1", "customresourcedefinitions", None, f"widgets.{widgets.split('/')[0]}")

    async def unserved() -> bool:
        status, _ = await api.request("GET", f"/apis/{widgets}/namespaces/{api.namespace}/widgets")
        return status == 404

    assert await eventually(unserved, timeout=SETTLE_TIMEOUT * 3)


async def test_the_schema_prunes_undeclared_fields_and_applies_defaults(api: ContractClient, widgets: str) -> None:
    created = await api.create(widgets, "widgets", api.namespace, {**widget(widgets, "w", replicas=1), "extra": {"dropped": True}})
    assert "extra" not in created
    assert created["spec"] == {"replicas": 1, "mode": "auto"}
