"""A manifest folder gets the API server's validation: names that would become paths on the node,
ConfigMap keys and subPaths are checked before anything runs, and a bad file is reported once."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from wasmlet.nodeagent.runtime.fake import FakeRun
from wasmlet.nodeagent.sources import StaticPods, load_manifests
from wasmlet.nodeagent.validation import Invalid, check_object

from tests.unit.agent_harness import Harness


def pod(**spec: Any) -> dict[str, Any]:
    containers = spec.pop("containers", [{"name": "main", "image": "file://m.wasm"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": spec.pop("name", "p"), **spec.pop("meta", {})},
            "spec": {"containers": containers, **spec}}


@pytest.mark.parametrize(("obj", "complaint"), [
    (pod(volumes=[{"name": "../../victim", "emptyDir": {}}]),
     'Pod "p" is invalid: spec.volumes[0].name: Invalid value: "../../victim": a lowercase RFC 1123 label'),
    (pod(name="Bad_Name"), 'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC '
                           "1123 subdomain must consist of"),
    (pod(meta={"namespace": "../other"}), 'metadata.namespace: Invalid value: "../other"'),
    (pod(containers=[{"name": "a/b", "image": "file://m.wasm"}]), 'spec.containers[0].name: Invalid value: "a/b"'),
    (pod(containers=[{"name": "a", "image": "x"}, {"name": "a", "image": "x"}]),
     'spec.containers[1].name: Duplicate value: "a"'),
    (pod(volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]), 'spec.volumes[1].name: Duplicate'),
    (pod(containers=[{"name": "main", "image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]),
     'spec.containers[0].volumeMounts[0].name: Not found: "nope"'),
    (pod(volumes=[{"name": "v", "emptyDir": {}}], containers=[
        {"name": "main", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "../up"}]}]),
     "volumeMounts[0].subPath: Invalid value: \"../up\": must not contain '..'"),
    (pod(volumes=[{"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "/etc/x"}]}}]),
     "spec.volumes[0].configMap.items[0].path: Invalid value: \"/etc/x\": must be a relative path"),
    ({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {".": "x"}},
     "ConfigMap \"c\" is invalid: data[.]: Invalid value: \".\": must not be '.'"),
    ({"kind": "Secret", "metadata": {"name": "s"}, "data": {"a/b": "eA=="}},
     'data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric characters'),
    ({"kind": "ConfigMap", "metadata": {"name": "c"}, "binaryData": {"..x": ""}}, "must not start with '..'"),
])
def test_what_the_api_server_would_refuse_is_refused_with_its_words(obj: dict[str, Any], complaint: str) -> None:
    with pytest.raises(Invalid) as refused:
        check_object(obj)
    assert complaint in str(refused.value)


def test_a_valid_pod_and_configmap_pass() -> None:
    check_object(pod(name="web.example", meta={"namespace": "team-a"}, volumes=[
        {"name": "conf", "configMap": {"name": "c", "items": [{"key": "app.conf", "path": "etc/app.conf"}]}}],
        containers=[{"name": "main", "image": "x", "volumeMounts": [
            {"name": "conf", "mountPath": "/etc", "subPath": "etc"}]}]))
    check_object({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"app.conf": "", "KEY_1": "", "-.x": ""}})


def test_a_volume_named_to_climb_out_is_refused_before_any_directory_is_touched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine\n")
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "bad.json").write_text(json.dumps(pod(volumes=[{"name": "../../../../victim", "emptyDir": {}}])))
    (folder / "key.yaml").write_text("kind: ConfigMap\nmetadata: {name: c}\ndata: {'.': x}\n")
    pods, objects, _, problems = load_manifests(folder, "node-1")
    assert pods == [] and objects == []
    assert [(p.path.name, p.message.split(":")[0]) for p in problems] == [
        ("bad.json", "document 0"), ("key.yaml", "document 0")]
    assert (victim / "keep").read_text() == "mine\n"


async def test_a_bad_file_is_reported_once_not_on_every_rescan(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "bad.json").write_text(json.dumps(pod(name="Bad_Name")))
    harness = Harness(tmp_path, lambda spec: FakeRun())
    static = StaticPods(folder, "node-1", harness.controller, harness.objects)
    with caplog.at_level(logging.ERROR, logger="wasmlet.nodeagent.sources"):
        for _ in range(3):
            await static.scan()
    assert [r.getMessage() for r in caplog.records].count(
        f"manifest {folder / 'bad.json'}: document 0: {static.problems[0].message.split(': ', 1)[1]}") == 1
    assert len(caplog.records) == 1
    await harness.controller.stop_all()
