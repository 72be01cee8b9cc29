"""The canonical CRDs: structural and fully described (all of crds/), and the WasmWorkload CRD
consistent with itself and with the operator; the peering CRDs what kopf expects.

The API server rejects a non-structural v1 CRD; these checks catch that (and a few things it
does not catch, like an undescribed field or a printer column pointing at nothing) without a
cluster. CEL rules are checked for presence and well-formedness only (no evaluator here).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasmlet.api import keys

from tests.fixtures.kubeapi_crd_schema import validate_crd_schemas

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "wasmworkloads.wasmlet.dev.yaml"
ALL_CRDS = sorted(CRD_PATH.parent.glob("*.yaml"))

# Not allowed anywhere in a structural schema (apiextensions v1 validation).
FORBIDDEN = {"$ref", "definitions", "dependencies", "additionalItems", "patternProperties", "id", "$schema"}
# Inside anyOf/allOf/oneOf/not only value validations may appear.
NOT_IN_JUNCTORS = {"type", "description", "default", "additionalProperties", "nullable", "title"}
INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE = "x-kubernetes-preserve-unknown-fields"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return dict(yaml.safe_load(CRD_PATH.read_text()))


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    [only] = crd["spec"]["versions"]
    return dict(only)


@pytest.fixture(scope="module")
def schema(version: dict[str, Any]) -> dict[str, Any]:
    return dict(version["schema"]["openAPIV3Schema"])


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its dotted path (`.spec.module.url`, `.spec.env[]`)."""
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_the_crd_names_the_api_of_the_design(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{keys.WORKLOAD_PLURAL}.{keys.GROUP}"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == (keys.GROUP, "Namespaced")
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (keys.WORKLOAD_KIND, "wasmworkloads", "wasmworkload")
    assert names["shortNames"] == ["ww"] and names["categories"] == ["wasmlet"]
    assert (version["name"], version["served"], version["storage"]) == (keys.VERSION, True, True)


def test_status_and_scale_subresources(version: dict[str, Any], schema: dict[str, Any]) -> None:
    subresources = version["subresources"]
    assert subresources["status"] == {}
    assert subresources["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    status = schema["properties"]["status"]["properties"]
    assert status["selector"]["type"] == "string"  # the scale subresource wants a string selector
    assert schema["properties"]["spec"]["properties"]["replicas"]["type"] == "integer"


def schema_of(path: Path) -> dict[str, Any]:
    [version] = yaml.safe_load(path.read_text())["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("crd_file", ALL_CRDS, ids=lambda p: p.name)
def test_every_schema_node_is_structural(crd_file: Path) -> None:
    for path, node in walk(schema_of(crd_file)):
        assert not FORBIDDEN & set(node), f"{path or '<root>'}: forbidden keyword {FORBIDDEN & set(node)}"
        if node.get(INT_OR_STRING):
            assert "type" not in node, f"{path}: int-or-string must not declare a type"
            continue
        assert "type" in node or node.get(PRESERVE), f"{path or '<root>'}: no type"
        assert not node.get("uniqueItems"), f"{path}: uniqueItems is not allowed"
        both = "properties" in node and "additionalProperties" in node
        assert not both, f"{path}: properties and additionalProperties"
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), f"{path}: an array needs one items schema"
        for junctor in ("anyOf", "allOf", "oneOf", "not"):
            for branch in node.get(junctor, []) if junctor != "not" else [node.get("not") or {}]:
                assert not NOT_IN_JUNCTORS & set(branch), f"{path}: {junctor} may hold value validations only"


@pytest.mark.parametrize("path", ALL_CRDS, ids=lambda p: p.name)
def test_metadata_is_only_typed(path: Path) -> None:
    # kube-apiserver refuses the whole CRD if metadata says anything else, a description included.
    assert schema_of(path)["properties"]["metadata"] == {"type": "object"}


CHART_CRDS = sorted((CRD_PATH.parents[1] / "helm" / "wasmlet" / "files" / "crds").glob("*.yaml"))


@pytest.mark.parametrize("path", ALL_CRDS + CHART_CRDS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_kube_apiserver_would_accept_the_schema(path: Path) -> None:
    # The test API's copy of apiextensions' schema rules (kept honest by tests/contract against a real server).
    assert [str(error) for error in validate_crd_schemas(yaml.safe_load(path.read_text())["spec"])] == []


@pytest.mark.parametrize("path", ALL_CRDS, ids=lambda p: p.name)
def test_every_property_has_a_description(path: Path) -> None:
    # .metadata is the exception: the server documents it and forbids a description there.
    undocumented = [where for where, node in walk(schema_of(path))
                    if where not in ("", ".metadata") and not where.endswith(("[]", "{}"))
                    and not str(node.get("description", "")).strip()]
    assert undocumented == []


@pytest.mark.parametrize(("name", "kind", "scope"), [
    ("clusterkopfpeerings.kopf.dev", "ClusterKopfPeering", "Cluster"),
    ("kopfpeerings.kopf.dev", "KopfPeering", "Namespaced"),
])
def test_the_peering_crds_are_what_kopf_uses(name: str, kind: str, scope: str) -> None:
    from wasmlet.kube.resources import CLUSTER_KOPF_PEERINGS, KOPF_PEERINGS

    crd = yaml.safe_load((CRD_PATH.parent / f"{name}.yaml").read_text())
    spec = crd["spec"]
    assert crd["metadata"]["name"] == name
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == ("kopf.dev", scope, kind)
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert "subresources" not in version  # kopf writes its keep-alives with the object, into status
    resource = CLUSTER_KOPF_PEERINGS if scope == "Cluster" else KOPF_PEERINGS
    assert (resource.group, resource.version, resource.plural) == ("kopf.dev", "v1", spec["names"]["plural"])
    # status maps operator identities (not known in advance) to entries kopf may extend.
    entry = version["schema"]["openAPIV3Schema"]["properties"]["status"]["additionalProperties"]
    assert entry["x-kubernetes-preserve-unknown-fields"] is True
    assert set(entry["properties"]) == {"priority", "lifetime", "lastseen"}


def test_defaults_are_where_the_design_says(schema: dict[str, Any]) -> None:
    spec = schema["properties"]["spec"]["properties"]
    assert spec["replicas"]["default"] == 1 and spec["replicas"]["minimum"] == 0
    assert spec["runtime"] == {**spec["runtime"], "enum": ["wasmer", "wasmtime"], "default": "wasmer"}
    assert spec["restartPolicy"]["enum"] == ["Always", "OnFailure", "Never"]
    assert spec["network"]["enum"] == ["none", "host"] and spec["network"]["default"] == "none"
    reschedule = spec["placement"]["properties"]["rescheduleAfterSeconds"]
    assert reschedule["nullable"] is True and reschedule["default"] == 60
    # Nested defaults apply only below an existing object: the parents default to {}.
    assert spec["placement"]["default"] == {} and spec["updateStrategy"]["default"] == {}
    rolling = spec["updateStrategy"]["properties"]["rollingUpdate"]["properties"]
    assert all(rolling[k].get(INT_OR_STRING) for k in ("maxUnavailable", "maxSurge"))
    limits = spec["resources"]["properties"]["limits"]["properties"]
    assert all(limits[k].get(INT_OR_STRING) for k in ("memory", "cpu"))
    assert spec["module"]["properties"]["sha256"]["pattern"] == "^[a-f0-9]{64}$"


def test_env_has_the_envvar_shape(schema: dict[str, Any]) -> None:
    env = schema["properties"]["spec"]["properties"]["env"]
    assert env["x-kubernetes-list-type"] == "map" and env["x-kubernetes-list-map-keys"] == ["name"]
    source = env["items"]["properties"]["valueFrom"]["properties"]
    assert set(source) == {"configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef"}
    volume = schema["properties"]["spec"]["properties"]["volumes"]["items"]["properties"]
    assert set(volume) == {"name", "configMap", "secret", "emptyDir", "hostPath"}


def test_cel_rules_are_present_and_well_formed(schema: dict[str, Any]) -> None:
    rules = {path: node["x-kubernetes-validations"] for path, node in walk(schema)
             if "x-kubernetes-validations" in node}
    expected = {"", ".spec", ".spec.module", ".spec.env[]", ".spec.env[].valueFrom", ".spec.volumes[]",
                ".spec.nodeSelector", ".spec.tolerations[]", ".spec.updateStrategy",
                ".spec.updateStrategy.rollingUpdate"}
    assert expected <= set(rules)
    for path, entries in rules.items():
        for entry in entries:
            rule = entry["rule"]
            assert entry.get("message"), f"{path}: rule without a message"
            assert rule.count("(") == rule.count(")") and rule.count("[") == rule.count("]"), f"{path}: {rule}"
            assert rule.count("'") % 2 == 0 and rule.count('"') % 2 == 0, f"{path}: unbalanced quotes"
            assert "self" in rule, f"{path}: a rule that does not look at self"
    module_rules = " ".join(e["rule"] for e in rules[".spec.module"])
    assert all(word in module_rules for word in ("image", "url", "configMap", "sha256"))


def test_lists_in_cel_rules_are_bounded(schema: dict[str, Any]) -> None:
    """The API server estimates a rule's cost from maxItems/maxLength; unbounded lists fail it."""
    spec = schema["properties"]["spec"]["properties"]
    for name in ("volumes", "volumeMounts", "env", "tolerations"):
        assert spec[name].get("maxItems"), f"spec.{name} needs maxItems"


def test_conditions_have_the_metav1_condition_shape(schema: dict[str, Any]) -> None:
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert set(item["properties"]) == {"type", "status", "observedGeneration", "lastTransitionTime",
                                       "reason", "message"}
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_status_has_the_fields_the_operator_writes(schema: dict[str, Any]) -> None:
    from wasmlet.operator.status import OWNED_KEYS

    assert set(OWNED_KEYS) == set(schema["properties"]["status"]["properties"])


def test_printer_columns_point_at_schema_fields(version: dict[str, Any], schema: dict[str, Any]) -> None:
    columns = version["additionalPrinterColumns"]
    names = [c["name"] for c in columns if not c.get("priority")]
    assert names == ["Ready", "Runtime", "Module", "Reason", "Age"]
    assert all(c.get("priority") == 1 for c in columns[len(names):])
    for column in columns:
        path = column["jsonPath"]
        if path == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        node = schema
        for part in re.sub(r"\[\?\(.*?\)\]", "[]", path).strip(".").split("."):
            part, is_list = part.removesuffix("[]"), part.endswith("[]")
            node = node["properties"][part]
            if is_list:
                assert node["type"] == "array", f"{path}: {part} is not a list"
                node = node["items"]
        expected = {"string": ("string",), "integer": ("integer",), "date": ("string",)}[column["type"]]
        assert node.get("type") in expected, f"{column['name']}: {path} is {node.get('type')}"


def test_the_reason_column_filters_the_ready_condition(version: dict[str, Any]) -> None:
    reason = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Reason")
    assert reason["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
