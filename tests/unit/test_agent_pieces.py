"""Small pure parts of the agent: settings, volume safety, the module cache."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from wasmlet.nodeagent.config import load_settings
from wasmlet.nodeagent.errors import PodConfigError, PullError, SettingsError, UnsupportedPod
from wasmlet.nodeagent.logs import ContainerLog, read_lines
from wasmlet.nodeagent.modules import ModuleCache
from wasmlet.nodeagent.objects import StaticObjects
from wasmlet.nodeagent.podspec import ModuleRef
from wasmlet.nodeagent.volumes import _expand, _inside


def test_settings_layer_defaults_file_environment_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("max-pods: 50\nnode_name: from-file\nkubelet_port: 1\n")
    settings = load_settings(config, {"WASMLET_NODE_NAME": "from-env", "WASMLET_KUBELET_PORT": "2"},
                             {"kubelet_port": 3, "node_labels": ["a=1", "b="]})
    assert (settings.max_pods, settings.node_name, settings.kubelet_port) == (50, "from-env", 3)
    assert settings.node_labels == {"a": "1", "b": ""}


@pytest.mark.parametrize(("flags", "name"), [({"kubelet_port": 70000}, "kubelet_port"),
                                             ({"runtimes": "wasmer,docker"}, "runtimes"),
                                             ({"max_pods": "many"}, "max_pods"),
                                             ({"event_loop_cpu": "0"}, "event_loop_cpu")])
def test_an_invalid_setting_is_named(flags: dict, name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(None, {}, flags)


@pytest.mark.parametrize("rel", ["../escape", "/etc/passwd", "a/../../b", "", "."])
def test_volume_item_paths_cannot_leave_the_volume(tmp_path: Path, rel: str) -> None:
    with pytest.raises(UnsupportedPod):
        _inside(tmp_path, rel, "item")


def test_env_expansion_follows_kubernetes() -> None:
    assert _expand("$(A)-$(MISSING)-$$(A)", {"A": "x"}) == "x-$(MISSING)-$(A)"


def test_logs_are_written_in_cri_format_and_read_back(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path / "0.log", max_bytes=1 << 20, max_files=2)
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"err\n")
    log.write("stdout", b"o\n")
    log.close()
    assert [(s, t) for _, s, t in read_lines(tmp_path / "0.log")] == [("stdout", "one"), ("stderr", "err"),
                                                                       ("stdout", "two")]


async def test_the_module_cache_verifies_digests_and_refuses_non_wasm(tmp_path: Path) -> None:
    good = b"\0asm\x01\0\0\0"
    (tmp_path / "good.wasm").write_bytes(good)
    (tmp_path / "bad.wasm").write_bytes(b"#!/bin/sh\n")
    cache = ModuleCache(tmp_path / "cache", StaticObjects(), 1 << 20)
    module = await cache.fetch(ModuleRef("file", "good.wasm"), "ns", tmp_path)
    assert module.digest == "sha256:" + hashlib.sha256(good).hexdigest()
    assert module.path.read_bytes() == good
    with pytest.raises(PullError, match="not a wasm module"):
        await cache.fetch(ModuleRef("file", "bad.wasm"), "ns", tmp_path)
    with pytest.raises(PullError, match="digest mismatch"):
        await cache._fetch(ModuleRef("file", "good.wasm", sha256="0" * 64), "ns", tmp_path)


async def test_concurrent_fetches_of_one_module_share_one_read(tmp_path: Path) -> None:
    (tmp_path / "m.wasm").write_bytes(b"\0asm\x01\0\0\0")
    cache = ModuleCache(tmp_path / "cache", StaticObjects(), 1 << 20)
    ref = ModuleRef("file", "m.wasm")
    results = await asyncio.gather(*(cache.fetch(ref, "ns", tmp_path) for _ in range(5)))
    assert len({r.digest for r in results}) == 1


@pytest.mark.parametrize(("value", "expected"), [
    ("$(A)", "x"), ("$(A)$(A)", "xx"), ("$$(A)", "$(A)"), ("$$$(A)", "$x"), ("$$", "$"), ("a$$b", "a$b"),
    ("$", "$"), ("$b", "$b"), ("a$", "a$"), ("$(", "$("), ("$(A", "$(A"), ("$()", "$()"), ("$(A)$(", "x$("),
    ("$(MISSING)", "$(MISSING)"), ("$($(A))", "$($(A))"), ("(A)$(A))", "(A)x)"), ("$(A)$$(A)$(A)", "x$(A)x"),
])
def test_env_expansion_matches_the_kubelets_edge_cases(value: str, expected: str) -> None:
    assert _expand(value, {"A": "x"}) == expected


def test_unclosed_references_stay_as_they_are() -> None:
    """400 KB of unclosed `$(` (a rescan for `)` after each one made this quadratic) come back
    unchanged; the first `)` closes the first `$(`, as in the kubelet."""
    hostile = "$(" * 200_000
    assert _expand(hostile, {}) == hostile
    assert _expand(hostile + "$(A)", {"A": "x"}) == hostile + "$(A)"
    assert _expand("$$" * 100_000 + "$(A)", {"A": "x"}) == "$" * 100_000 + "x"


def kubelet_expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's expansion (third_party/forked/golang/expansion), transcribed step by step:
    the oracle the fast one is checked against."""
    out, checkpoint, cursor = [], 0, 0
    while cursor < len(value):
        if value[cursor] == "$" and cursor + 1 < len(value):
            out.append(value[checkpoint:cursor])
            rest = value[cursor + 1:]
            if rest[0] == "$":
                read, advance = "$", 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    read, advance = "$(", 1
                else:
                    name = rest[1:close]
                    read, advance = env.get(name, f"$({name})"), close + 1
            else:
                read, advance = "$" + rest[0], 1
            out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + value[checkpoint:]


@pytest.mark.parametrize("seed", range(20))
def test_env_expansion_equals_the_kubelets_on_random_values(seed: int) -> None:
    rng = random.Random(seed)
    env = {"A": "x", "B": "$(A)", "": "never"}
    for _ in range(300):
        value = "".join(rng.choice("$$$((()))AB b") for _ in range(rng.randint(0, 24)))
        assert _expand(value, env) == kubelet_expand(value, env), value


def test_a_value_that_would_multiply_a_variable_is_refused() -> None:
    big = {"BIG": "x" * 1_000_000}
    with pytest.raises(PodConfigError, match="expands by more than 2097152 bytes"):
        _expand("$(BIG)" * 100_000, big)
    assert len(_expand("$(BIG)$(BIG)", big)) == 2_000_000
