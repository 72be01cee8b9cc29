"""The Pod field table static manifests are checked against is Kubernetes' own (v1.36 OpenAPI).

Run this file as a script to rewrite the table from the schema:
`.venv/bin/python tests/unit/test_pod_fields.py`.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]

from wasmlet.nodeagent import podschema
from wasmlet.nodeagent.podfields import unknown_fields

KUBERNETES = "1.36.0"
ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "nodeagent" / "src" / "wasmlet" / "nodeagent" / "podschema.py"


def schema_types() -> dict[str, dict[str, str]]:
    """{type: {field: the field's object type, or "" for a leaf}} for every type a Pod reaches."""
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{KUBERNETES}-local"
    defs: dict[str, Any] = json.loads((folder / "_definitions.json").read_text())["$defs"]
    table: dict[str, dict[str, str]] = {}
    todo = ["io.k8s.api.core.v1.Pod"]
    while todo:
        full = todo.pop()
        short = full.rsplit(".", 1)[1]
        if short in table or not defs[full].get("properties"):
            continue
        fields = {}
        for name, prop in defs[full]["properties"].items():
            ref = next((p["$ref"] for p in (prop, prop.get("items") or {}, *(prop.get("allOf") or []))
                        if "$ref" in p), None)
            target = ref.rsplit("/", 1)[1] if ref else None
            fields[name] = target.rsplit(".", 1)[1] if target and defs[target].get("properties") else ""
            if fields[name]:
                todo.append(target)  # type: ignore[arg-type]
        table[short] = fields
    return table


def render(table: dict[str, dict[str, str]]) -> str:
    lines = []
    for name in sorted(table):
        words = " ".join(f"{f}:{t}" if t else f for f, t in sorted(table[name].items()))
        wrapped = textwrap.wrap(words, 100)
        if len(wrapped) == 1 and len(name) + len(words) < 104:
            lines.append(f'    "{name}": "{words}",')
            continue
        body = "\n".join(f'        "{w}{" " if i < len(wrapped) - 1 else ""}"' for i, w in enumerate(wrapped))
        lines.append(f'    "{name}": (\n{body}\n    ),')
    head, _, _ = TABLE.read_text().partition("SOURCE: dict[str, str] = {\n")
    return head + "SOURCE: dict[str, str] = {\n" + "\n".join(lines) + "\n}\n" + TABLE.read_text().split("\n}\n", 1)[1]


def test_the_pod_field_table_is_kubernetes_own() -> None:
    assert schema_types() == podschema.TYPES


def test_a_correct_pod_has_no_unknown_fields() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"any": "label"}},
           "spec": {"restartPolicy": "Never", "volumes": [{"name": "v", "configMap": {"name": "c"}}],
                    "containers": [{"name": "main", "image": "file:m.wasm", "env": [{"name": "A", "value": "b"}],
                                    "resources": {"limits": {"memory": "16Mi"}},
                                    "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}}
    assert unknown_fields(pod) == []


def test_every_misspelt_field_is_named_with_its_path_as_the_api_server_does() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "lables": {}},
           "spec": {"contianers": [], "containers": [{"name": "main", "enviroment": [], "env": [{"nmae": "A"}]}],
                    "volumes": [{"name": "v", "configMap": {"name": "c", "itmes": []}}]}}
    assert unknown_fields(pod) == [  # in the order the manifest has them
        "metadata.lables", "spec.contianers", "spec.containers[0].enviroment", "spec.containers[0].env[0].nmae",
        "spec.volumes[0].configMap.itmes",
    ]


if __name__ == "__main__":
    TABLE.write_text(render(schema_types()))
    sys.exit(0)
