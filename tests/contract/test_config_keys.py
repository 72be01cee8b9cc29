"""ConfigMap and Secret keys are file names: the server refuses any other key with 422 Invalid."""

from __future__ import annotations

import base64

import pytest

from tests.contract.builders import configmap
from tests.contract.conftest import ContractClient
from tests.fixtures.kubeclient import ApiError

KEY_RULE = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
LONG = "k" * 254


@pytest.mark.parametrize(("key", "detail"), [
    ("c/d", KEY_RULE),
    ("", KEY_RULE),
    ("with space", KEY_RULE),
    (".", "must not be '.'"),
    ("..", "must not be '..'"),
    ("..hidden", "must not start with '..'"),
    (LONG, "must be no more than 253 characters"),
], ids=["slash", "empty", "space", "dot", "dot-dot", "dot-dot-prefix", "254-characters"])  # fmt: skip
async def test_a_configmap_or_secret_key_that_is_no_file_name_is_invalid(api: ContractClient, key: str, detail: str) -> None:
    value = base64.b64encode(b"x").decode()
    for plural, kind, body in [
        ("configmaps", "ConfigMap", configmap("cm", data={key: "x"})),
        ("secrets", "Secret", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {key: value}}),
    ]:
        with pytest.raises(ApiError) as error:
            await api.create("v1", plural, api.namespace, body)
        name = body["metadata"]["name"]
        cause = {"reason": "FieldValueInvalid", "message": f'Invalid value: "{key}": {detail}', "field": f"data[{key}]"}
        assert error.value.status == 422 and error.value.body["details"]["causes"] == [cause]
        assert error.value.message == f'{kind} "{name}" is invalid: data[{key}]: Invalid value: "{key}": {detail}'


async def test_file_name_keys_are_accepted(api: ContractClient) -> None:
    keys = {"a", "key.name", "KEY_NAME", "key-name", ".hidden", "a..b", "k" * 253}
    created = await api.create("v1", "configmaps", api.namespace, configmap("cm", data=dict.fromkeys(keys, "x")))
    assert set(created["data"]) == keys


async def test_a_key_in_both_data_and_binary_data_is_invalid(api: ContractClient) -> None:
    body = configmap("cm", data={"a": "x"})
    body["binaryData"] = {"a": base64.b64encode(b"x").decode()}
    with pytest.raises(ApiError) as error:
        await api.create("v1", "configmaps", api.namespace, body)
    assert error.value.message == 'ConfigMap "cm" is invalid: data[a]: Invalid value: "a": duplicate of key present in binaryData'


async def test_a_configmap_over_one_mebibyte_is_too_long(api: ContractClient) -> None:
    with pytest.raises(ApiError) as error:
        await api.create("v1", "configmaps", api.namespace, configmap("cm", data={"a": "x" * (1024 * 1024 + 1)}))
    assert error.value.status == 422
    assert error.value.body["details"]["causes"] == [
        {"reason": "FieldValueTooLong", "message": "Too long: may not be more than 1048576 bytes", "field": "[]"}
    ]


async def test_a_patch_that_adds_a_bad_key_is_invalid_and_changes_nothing(api: ContractClient) -> None:
    await api.create("v1", "configmaps", api.namespace, configmap("cm", data={"a": "1"}))
    with pytest.raises(ApiError) as error:
        await api.patch("v1", "configmaps", api.namespace, "cm", {"data": {"c/d": "2"}})
    assert error.value.status == 422 and error.value.body["details"]["causes"][0]["field"] == "data[c/d]"
    assert (await api.get("v1", "configmaps", api.namespace, "cm"))["data"] == {"a": "1"}
