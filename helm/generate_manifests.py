"""Render manifests/ from the chart: the plain-YAML install is the chart, not a second copy.

    .venv/bin/python helm/generate_manifests.py           # rewrite manifests/
    .venv/bin/python helm/generate_manifests.py --check   # exit 1 if manifests/ is out of date

The chart is rendered with Helm's own engine (helm-python-sdk, no helm binary) as release
`wasmlet` in namespace `wasmlet-system` with `helm/manifests-values.yaml`, and each template's
objects go to the numbered file of LAYOUT, so `kubectl apply -f crds/ -f manifests/` creates them
in a working order (kubectl applies a folder's files in name order). tests/deploy checks that
manifests/ is what this script writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import helm_python
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "wasmlet"
VALUES = ROOT / "helm" / "manifests-values.yaml"
OUTPUT = ROOT / "manifests"
RELEASE = "wasmlet"
NAMESPACE = "wasmlet-system"

# Template → manifest file, in apply order: the namespace first, identities and their
# permissions before the workloads that use them. None: never part of manifests/.
LAYOUT: dict[str, str | None] = {
    "namespace.yaml": "00-namespace.yaml",
    "runtimeclasses.yaml": "10-runtimeclasses.yaml",
    "operator-serviceaccount.yaml": "20-serviceaccounts.yaml",
    "agent-serviceaccount.yaml": "20-serviceaccounts.yaml",
    "operator-rbac.yaml": "30-rbac.yaml",
    "agent-rbac.yaml": "30-rbac.yaml",
    "operator-deployment.yaml": "40-operator.yaml",
    "operator-service.yaml": "40-operator.yaml",
    "agent-daemonset.yaml": "50-agent.yaml",
    "agent-service.yaml": "50-agent.yaml",
    "agent-servicemonitor.yaml": None,  # needs the Prometheus Operator; Helm users opt in
    "operator-servicemonitor.yaml": None,
    "crds.yaml": None,  # applied from crds/
    "NOTES.txt": None,
}

HEADER = """\
# Generated from helm/wasmlet with helm/manifests-values.yaml by helm/generate_manifests.py.
# Do not edit: change the chart or those values and run `.venv/bin/python helm/generate_manifests.py`.
"""


def render_manifests() -> dict[str, str]:
    """The content of every file of manifests/ (README.md aside), by file name."""
    values = yaml.safe_load(VALUES.read_text()) or {}
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    documents: dict[str, list[str]] = {}
    for path, text in sorted(rendered.items()):
        template = path.split("/templates/", 1)[1]
        if template not in LAYOUT:
            raise SystemExit(f"template {template} has no place in LAYOUT of {Path(__file__).name}")
        docs = _documents(text) if template != "NOTES.txt" else []
        target = LAYOUT[template]
        if docs and target is None:
            raise SystemExit(f"template {template} rendered objects, but LAYOUT keeps it out of manifests/")
        if target is not None:
            documents.setdefault(target, []).extend(docs)
    return {name: HEADER + "\n---\n".join(docs) + "\n" for name, docs in sorted(documents.items()) if docs}


def _documents(text: str) -> list[str]:
    """The non-empty YAML documents of one rendered template, in order."""
    chunks: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip() == "---":
            chunks.append([])
        else:
            chunks[-1].append(line)
    docs = ["\n".join(chunk).strip("\n") for chunk in chunks]
    return [doc for doc in docs if yaml.safe_load(doc) is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether manifests/ is up to date")
    args = parser.parse_args(argv)
    wanted = render_manifests()
    present = {p.name: p.read_text() for p in OUTPUT.glob("*.yaml")}
    if args.check:
        stale = sorted(name for name in set(wanted) | set(present) if wanted.get(name) != present.get(name))
        for name in stale:
            print(f"manifests/{name} is out of date", file=sys.stderr)
        return 1 if stale else 0
    for name in sorted(set(present) - set(wanted)):
        if not present[name].startswith(HEADER):
            raise SystemExit(f"manifests/{name} was not generated from the chart: move its objects into a template")
        (OUTPUT / name).unlink()
    for name, text in wanted.items():
        (OUTPUT / name).write_text(text)
    print(f"wrote {len(wanted)} files to {OUTPUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
