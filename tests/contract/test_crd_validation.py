"""A CRD is validated before it is stored: structural schemas, x-kubernetes-* extensions, list
types and defaults; a bad one is refused with 422 Invalid, its causes at the schema's paths.

Every CRD here is submitted with `dryRun=All` in a group of its own, so nothing is stored on a
real cluster. Our own CRDs (crds/ and the chart's copies) go through the same door.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.builders import widget_crd
from tests.contract.conftest import ContractClient

ROOT = Path(__file__).resolve().parents[2]
OUR_CRDS = sorted((ROOT / "crds").glob("*.yaml")) + sorted((ROOT / "helm" / "wasmlet" / "files" / "crds").glob("*.yaml"))
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
AT = "spec.validation.openAPIV3Schema"  # one version: the server reports its schema as the top-level one
SPEC = f"{AT}.properties[spec].properties"
METADATA_DETAIL = "must not specify anything other than name and generateName, but metadata is implicitly specified"


def with_spec(**properties: Any) -> dict[str, Any]:
    """A root schema whose `spec` has these properties."""
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": properties}}}


def map_list(keys: list[str] | None, *, required: bool = True, list_type: str | None = "map") -> dict[str, Any]:
    """An array of objects with a `name`, as a map list keyed by `keys` (None: no keys)."""
    items = {"type": "object", "properties": {"name": {"type": "string"}}, **({"required": ["name"]} if required else {})}
    node: dict[str, Any] = {"type": "array", "items": items}
    if list_type:
        node["x-kubernetes-list-type"] = list_type
    if keys is not None:
        node["x-kubernetes-list-map-keys"] = keys
    return node


# id → (schema, [(cause reason, field, cause message)]) as kube-apiserver answers.
BAD_SCHEMAS: dict[str, tuple[dict[str, Any], list[tuple[str, str, str]]]] = {
    "metadata-with-a-description": (
        {"type": "object", "properties": {"metadata": {"type": "object", "description": "Standard object metadata."}}},
        [("FieldValueForbidden", f"{AT}.properties[metadata]", f"Forbidden: {METADATA_DETAIL}")],
    ),
    "metadata-with-labels": (
        {"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}},
        [("FieldValueForbidden", f"{AT}.properties[metadata]", f"Forbidden: {METADATA_DETAIL}")],
    ),
    "an-untyped-field": (
        with_spec(size={"description": "no type"}),
        [("FieldValueRequired", f"{SPEC}[size].type", "Required value: must not be empty for specified object fields")],
    ),
    "untyped-array-items": (
        with_spec(sizes={"type": "array", "items": {"description": "no type"}}),
        [("FieldValueRequired", f"{SPEC}[sizes].items.type", "Required value: must not be empty for specified array items")],
    ),
    "an-array-without-items": (
        with_spec(sizes={"type": "array"}),
        [("FieldValueRequired", f"{SPEC}[sizes].items", "Required value: must be specified")],
    ),
    "two-untyped-fields-sorted": (
        with_spec(b={"description": "no type"}, a={"description": "no type"}),
        [("FieldValueRequired", f"{SPEC}[a].type", "Required value: must not be empty for specified object fields"),
         ("FieldValueRequired", f"{SPEC}[b].type", "Required value: must not be empty for specified object fields")],
    ),
    "int-or-string-preserving-unknown-fields": (
        with_spec(size={"x-kubernetes-int-or-string": True, "x-kubernetes-preserve-unknown-fields": True}),
        [("FieldValueInvalid", f"{SPEC}[size].x-kubernetes-preserve-unknown-fields",
          "Invalid value: true: must be false if x-kubernetes-int-or-string is true")],
    ),
    "preserve-unknown-fields-false": (
        with_spec(extra={"type": "object", "x-kubernetes-preserve-unknown-fields": False}),
        [("FieldValueInvalid", f"{SPEC}[extra].x-kubernetes-preserve-unknown-fields", "Invalid value: false: must be true or undefined")],
    ),
    "a-description-inside-any-of": (
        with_spec(size={"type": "string", "anyOf": [{"description": "inside", "pattern": "^a"}]}),
        [("FieldValueForbidden", f"{SPEC}[size].anyOf[0].description", "Forbidden: must be empty to be structural")],
    ),
    "properties-and-additional-properties": (
        with_spec(labels={"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}),
        [("FieldValueForbidden", f"{SPEC}[labels].additionalProperties",
          "Forbidden: additionalProperties and properties are mutual exclusive")],
    ),
    "kind-typed-as-integer": (
        {"type": "object", "properties": {"kind": {"type": "integer"}}},
        [("FieldValueInvalid", f"{AT}.properties[kind].type", 'Invalid value: "integer": must be string')],
    ),
    "unique-items": (
        with_spec(tags={"type": "array", "uniqueItems": True, "items": {"type": "string"}}),
        [("FieldValueForbidden", f"{SPEC}[tags].uniqueItems",
          "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic")],
    ),
    "a-map-list-without-keys": (
        with_spec(ports=map_list(None)),
        [("FieldValueRequired", f"{SPEC}[ports].x-kubernetes-list-map-keys",
          "Required value: must not be empty if x-kubernetes-list-type is map")],
    ),
    "map-keys-naming-no-property": (
        with_spec(ports=map_list(["port"])),
        [("FieldValueInvalid", f"{SPEC}[ports].x-kubernetes-list-map-keys",
          'Invalid value: ["port"]: entries must all be names of item properties')],
    ),
    "an-optional-map-key-without-default": (
        with_spec(ports=map_list(["name"], required=False)),
        [("FieldValueRequired", f"{SPEC}[ports].items.properties[name].default",
          "Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property")],
    ),
    "map-keys-without-a-list-type": (
        with_spec(ports=map_list(["name"], list_type=None)),
        [("FieldValueRequired", f"{SPEC}[ports].x-kubernetes-list-type",
          "Required value: must be map if x-kubernetes-list-map-keys is non-empty")],
    ),
    "a-list-type-on-a-string": (
        with_spec(name={"type": "string", "x-kubernetes-list-type": "set"}),
        [("FieldValueInvalid", f"{SPEC}[name].type", 'Invalid value: "string": must be array if x-kubernetes-list-type is specified')],
    ),
    "a-set-of-granular-objects": (
        with_spec(ports={"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object",
                                                                                     "properties": {"n": {"type": "string"}}}}),
        [("FieldValueInvalid", f"{SPEC}[ports].items.x-kubernetes-map-type",
          "Invalid value: null: must be atomic as item of a list with x-kubernetes-list-type=set")],
    ),
    "a-default-of-the-wrong-type": (
        with_spec(replicas={"type": "integer", "default": "one"}),
        [("FieldValueTypeInvalid", f"{SPEC}[replicas].default", 'Invalid value: "string":  in body must be of type integer: "string"')],
    ),
    "a-default-outside-the-enum": (
        with_spec(mode={"type": "string", "enum": ["fast", "safe"], "default": "slow"}),
        [("FieldValueNotSupported", f"{SPEC}[mode].default", 'Unsupported value: "slow": supported values: "fast", "safe"')],
    ),
    "a-default-below-the-minimum": (
        with_spec(replicas={"type": "integer", "minimum": 1, "default": 0}),
        [("FieldValueInvalid", f"{SPEC}[replicas].default", "Invalid value: 0:  in body should be greater than or equal to 1")],
    ),
    "a-default-not-matching-the-pattern": (
        with_spec(path={"type": "string", "pattern": "^/", "default": "x"}),
        [("FieldValueInvalid", f"{SPEC}[path].default", "Invalid value: \"x\":  in body should match '^/'")],
    ),
    "a-default-that-is-too-long": (
        with_spec(code={"type": "string", "maxLength": 2, "default": "abc"}),
        [("FieldValueTooLong", f"{SPEC}[code].default", "Too long: may not be more than 2 bytes")],
    ),
    "a-default-with-unknown-fields": (
        with_spec(placement={"type": "object", "properties": {"spread": {"type": "boolean"}}, "default": {"spread": True, "zone": "a"}}),
        [("FieldValueInvalid", f"{SPEC}[placement].default", 'Invalid value: {"spread":true,"zone":"a"}: must not have unknown fields')],
    ),
    "a-default-with-a-wrongly-typed-field": (
        with_spec(placement={"type": "object", "properties": {"spread": {"type": "boolean"}}, "default": {"spread": "yes"}}),
        [("FieldValueTypeInvalid", f"{SPEC}[placement].default.spread",
          'Invalid value: "string": spread in body must be of type boolean: "string"')],
    ),
    "a-default-missing-a-required-field": (
        with_spec(http={"type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}}, "default": {}}),
        [("FieldValueRequired", f"{SPEC}[http].default.port", "Required value")],
    ),
    "a-default-list-with-a-wrong-item": (
        with_spec(ports={"type": "array", "items": {"type": "integer"}, "default": [80, "http"]}),
        [("FieldValueTypeInvalid", f"{SPEC}[ports].default.[1]", 'Invalid value: "string": [1] in body must be of type integer: "string"')],
    ),
    "a-default-in-top-level-metadata": (
        {"type": "object", "properties": {"metadata": {"type": "object", "default": {}}}},
        [("FieldValueForbidden", f"{AT}.properties[metadata].default", "Forbidden: must not be set in top-level metadata")],
    ),
}


def expected_status(name: str, causes: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The Status kube-apiserver answers for an invalid CRD with these causes."""
    summary = [f"{field}: {message}" for _, field, message in causes]
    text = summary[0] if len(summary) == 1 else "[" + ", ".join(summary) + "]"
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: {text}',
        "reason": "Invalid",
        "details": {
            "name": name,
            "group": "apiextensions.k8s.io",
            "kind": "CustomResourceDefinition",
            "causes": [{"reason": reason, "message": message, "field": field} for reason, field, message in causes],
        },
        "code": 422,
    }


@pytest.mark.parametrize("case", sorted(BAD_SCHEMAS))
async def test_a_crd_with_a_bad_schema_is_refused_with_the_fields_at_fault(api: ContractClient, case: str) -> None:
    schema, causes = BAD_SCHEMAS[case]
    crd = widget_crd(f"{api.unique('v')}.contract.wasmlet.dev", schema)
    status, body = await api.request("POST", CRDS, params={"dryRun": "All"}, body=crd)
    assert (status, body) == (422, expected_status(crd["metadata"]["name"], causes))


async def test_a_well_formed_crd_passes_a_dry_run(api: ContractClient) -> None:
    crd = widget_crd(f"{api.unique('v')}.contract.wasmlet.dev")
    status, body = await api.request("POST", CRDS, params={"dryRun": "All"}, body=crd)
    assert status == 201 and body["metadata"]["name"] == crd["metadata"]["name"]
    assert await api.request("GET", f"{CRDS}/{crd['metadata']['name']}") == (404, _not_found(crd["metadata"]["name"]))


def _not_found(name: str) -> dict[str, Any]:
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'customresourcedefinitions.apiextensions.k8s.io "{name}" not found', "reason": "NotFound",
        "details": {"name": name, "group": "apiextensions.k8s.io", "kind": "customresourcedefinitions"}, "code": 404,
    }  # fmt: skip


@pytest.mark.parametrize("path", OUR_CRDS, ids=lambda p: str(p.relative_to(ROOT)))
async def test_our_crds_are_accepted(api: ContractClient, path: Path) -> None:
    """Each of our CRDs, moved to a throwaway group (the schema is what counts), passes validation."""
    crd = yaml.safe_load(path.read_text())
    group = f"{api.unique('o')}.contract.wasmlet.dev"
    crd["spec"]["group"] = group
    crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{group}"
    status, body = await api.request("POST", CRDS, params={"dryRun": "All"}, body=crd)
    assert status == 201, body
