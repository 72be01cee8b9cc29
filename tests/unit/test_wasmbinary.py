"""What a wasm binary is, from its bytes: module or component, a component's world, what a host
lacks, and how the OCI config describes it (push) and is checked against it (pull)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wasmtime

from wasmlet.cli.push import config_fields
from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.oci.manifest import (
    OCI_MANIFEST,
    WASM_CONFIG,
    WASM_LAYER,
    check_kind,
    declared_kind,
    find_module,
    parse_document,
    pick_platform,
)
from wasmlet.nodeagent.runtime.wasmtime_component import missing_imports, run_export, unsupported_message
from wasmlet.nodeagent.wasmbinary import BinaryError, World, describe, kind_of, world

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODULE = (EXAMPLES / "modules" / "echo.wasm").read_bytes()
COMPONENT = (EXAMPLES / "components" / "echo.wasm").read_bytes()
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def test_the_header_tells_a_module_from_a_component() -> None:
    assert kind_of(MODULE[:8]) == "module"
    assert kind_of(COMPONENT[:8]) == "component"
    assert kind_of(b"\0asm\x02\0\0\0") is None and kind_of(b"#!/bin/sh") is None and kind_of(b"") is None
    assert describe(b"\0asm\x02\0\0\0") == "a wasm binary of unknown version 02 00 00 00"
    assert describe(b"ELF") == "not a wasm binary"


def test_a_components_world_is_what_wasmtime_sees() -> None:
    found = world(COMPONENT)
    engine = wasmtime.Engine()
    kind = wasmtime.component.Component(engine, COMPONENT).type
    assert found.imports == tuple(kind.imports(engine))
    assert found.exports == tuple(kind.exports(engine)) == ("wasi:cli/run@0.2.12",)
    assert "wasi:filesystem/preopens@0.2.12" in found.imports


def test_names_with_a_version_suffix_and_value_bounds_are_read() -> None:
    binary = bytes(wasmtime.wat2wasm("""(component
      (import "a:b/c@1.0.0" (instance))
      (import "f" (func))
      (core module $m (func (export "run") (result i32) i32.const 0))
      (core instance $i (instantiate $m))
      (func $run (result (result)) (canon lift (core func $i "run")))
      (export "g" (func $run)))"""))
    assert world(binary) == World(("a:b/c@1.0.0", "f"), ("g",))


@pytest.mark.parametrize("binary, message", [
    (MODULE, "a wasm module, not a component"),
    (COMPONENT[:40], "runs past the end"),
    (b"\0asm\x0d\0\x01\0\x0a\x05\x01\x07\0\0\0", "unknown name form 0x7"),
])
def test_a_broken_component_is_a_binary_error(binary: bytes, message: str) -> None:
    with pytest.raises(BinaryError, match=message):
        world(binary)


def test_missing_imports_follow_the_pods_network_and_wasi_02_versions() -> None:
    found = World(("wasi:cli/stdout@0.2.0", "wasi:http/outgoing-handler@0.2.3", "wasi:cli/stdin@0.3.0",
                   "my:app/thing"), ("wasi:cli/run@0.2.9",))
    assert missing_imports(found, network=False) == ["wasi:http/outgoing-handler@0.2.3", "wasi:cli/stdin@0.3.0",
                                                     "my:app/thing"]
    assert missing_imports(found, network=True) == ["wasi:cli/stdin@0.3.0", "my:app/thing"]
    assert run_export(found) == "wasi:cli/run@0.2.9"
    assert run_export(World((), ("wasi:cli/run@0.3.0",))) is None
    message = unsupported_message("web", ["wasi:http/types@0.2.0"], network=False)
    assert message.startswith("container 'web': the component imports wasi:http/types@0.2.0, which the wasmtime")
    assert message.endswith("and outgoing wasi:http when the Pod has hostNetwork: true)")


def test_push_describes_the_binary_in_the_oci_config() -> None:
    assert config_fields(MODULE) == {"os": "wasip1"}
    fields = config_fields(COMPONENT)
    assert fields["os"] == "wasip2"
    assert fields["component"]["exports"] == ["wasi:cli/run@0.2.12"]
    assert fields["component"]["imports"] == list(world(COMPONENT).imports)
    with pytest.raises(BinaryError, match="not a wasm binary: not a wasm module or component"):
        config_fields(b"#!/bin/sh\n")


def test_pull_checks_the_binary_against_the_configs_os() -> None:
    assert declared_kind(json.dumps({"os": "wasip2"}).encode()) == "component"
    assert declared_kind(json.dumps({"os": "wasip1"}).encode()) == "module"
    assert declared_kind(b"{}") is None and declared_kind(b'{"os": "linux"}') is None
    check_kind("component", COMPONENT[:8])
    check_kind(None, MODULE[:8])
    with pytest.raises(PullError, match="its config says os 'wasip2' \\(a wasm component\\), but the layer is a wasm "
                                        "module"):
        check_kind("component", MODULE[:8])
    with pytest.raises(PullError, match="invalid wasm config: not JSON"):
        declared_kind(b"{")


def test_a_wasip2_index_entry_and_the_wasm_config_are_picked() -> None:
    index = parse_document(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": D1, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": D2, "size": 1, "platform": {"os": "wasip2", "architecture": "wasm"}},
    ]}).encode(), "")
    assert pick_platform(index).digest == D2
    manifest = parse_document(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                          "config": {"mediaType": WASM_CONFIG, "digest": D2, "size": 20},
                                          "layers": [{"mediaType": WASM_LAYER, "digest": D1, "size": 9}]}).encode(), "")
    artifact = find_module(manifest)
    assert artifact.config is not None and artifact.config.digest == D2 and not artifact.packed
