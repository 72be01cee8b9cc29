"""The user-facing install docs stay true to the code: every reason a user can see is explained,
the Grafana dashboard graphs metrics that exist, and the RBAC tables name what the chart grants."""

from __future__ import annotations

import ast
import json
import re

from tests.deploy.chart import ROOT, render
from tests.deploy.test_rbac import granted, service_account_of

DOCS = ROOT / "docs"
SOURCES = [ROOT / "operator" / "src", ROOT / "nodeagent" / "src", ROOT / "common" / "src"]
# Where a reason string is an argument: the call's name → the argument's position.
REASON_ARGUMENT = {"fail": 0, "set_waiting": 0, "set_terminated": 1, "ExitStatus": 1, "Condition": 2, "Notice": 1,
                   "event": 1, "set_ready": 1}
REASON = re.compile(r"^[A-Z][A-Za-z]+$")  # CamelCase, as Kubernetes spells reasons
NOT_REASONS = {"Warning", "Normal"}  # event types, at the same argument position in some calls


def reasons_in_code() -> dict[str, str]:
    """Every literal reason the components write, with one place it comes from."""
    found: dict[str, str] = {}
    for path in (p for source in SOURCES for p in sorted(source.rglob("*.py"))):
        for node in ast.walk(ast.parse(path.read_text())):
            for value in _reason_literals(node):
                if REASON.match(value) and value not in NOT_REASONS:
                    found.setdefault(value, f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}")
    return found


def _reason_literals(node: ast.AST) -> list[str]:
    values: list[object] = []
    if isinstance(node, ast.Call):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        values += [k.value.value for k in node.keywords if k.arg == "reason" and isinstance(k.value, ast.Constant)]
        position = REASON_ARGUMENT.get(name)
        if position is not None and len(node.args) > position and isinstance(node.args[position], ast.Constant):
            values.append(node.args[position].value)
    elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
            and any(isinstance(t, ast.Name) and t.id == "reason" for t in node.targets):
        values.append(node.value.value)
    elif isinstance(node, ast.Dict):
        values += [v.value for k, v in zip(node.keys, node.values, strict=True)
                   if isinstance(k, ast.Constant) and k.value == "reason" and isinstance(v, ast.Constant)]
    return [v for v in values if isinstance(v, str)]


def test_the_reason_scan_finds_reasons_of_every_component() -> None:
    found = reasons_in_code()
    assert {"Unschedulable", "InvalidSpec", "CrashLoopBackOff", "ErrImagePull", "UnknownRuntimeClass",
            "KubeletNotReady", "Pulling"} <= set(found)


def test_troubleshooting_explains_every_reason_a_user_can_see() -> None:
    text = (DOCS / "troubleshooting.md").read_text()
    missing = {reason: where for reason, where in reasons_in_code().items() if f"`{reason}`" not in text}
    assert not missing, f"explain these reasons in docs/troubleshooting.md: {missing}"


def metric_names() -> set[str]:
    """Every series name the agent and the operator export (counters with _total, histograms' parts)."""
    from wasmlet.nodeagent.metrics import AgentMetrics
    from wasmlet.operator.metrics import OperatorMetrics

    names = set()
    for registry in (AgentMetrics().registry, OperatorMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
            names |= {sample.name for sample in family.samples}
            if family.type == "histogram":
                names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum")}
            if family.type == "counter":
                names.add(f"{family.name}_total")
    return names


def test_the_grafana_dashboard_graphs_metrics_that_exist() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    used = {m for expr in exprs for m in re.findall(r"\b((?:wasmlet|process)_[a-z_]+)\b", expr)}
    exported = metric_names()
    assert used and used <= exported, f"not exported: {sorted(used - exported)}"
    plain = {n for n in exported if n.startswith("wasmlet_") and not n.endswith(("_created", "_bucket", "_count", "_sum"))}
    families = {n.removesuffix("_total") for n in plain}
    graphed = {n.removesuffix("_total").removesuffix("_bucket") for n in used}
    assert families <= graphed, f"metrics without a panel: {sorted(families - graphed)}"


def test_install_docs_name_every_resource_the_chart_grants() -> None:
    text = (DOCS / "install.md").read_text()
    objects = render({"operator": {"watchNamespace": "apps"}})
    for kind in ("Deployment", "DaemonSet"):
        for _, _, resource, _verb in granted(objects, service_account_of(objects, kind)):
            assert f"`{resource}`" in text or f"`{resource}` in" in text, resource


def test_docs_link_to_each_other_and_exist() -> None:
    for name in ("install.md", "first-workload.md", "operations.md", "troubleshooting.md"):
        text = (DOCS / name).read_text()
        for target in re.findall(r"\]\(([a-z-]+\.(?:md|json))(?:#[a-z-]+)?\)", text):
            assert (DOCS / target).exists(), f"{name} links to missing {target}"


def test_the_repository_stands_alone_citing_no_design_notes_outside_it() -> None:
    # Spelled in two parts so this file does not cite them itself.
    outside = ("DESIGN" + ".md", "STYLE" + ".md")
    skipped = {".git", ".venv", "build", "node_modules", "__pycache__"}
    citing = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if parts & skipped or any(p.endswith(".egg-info") for p in parts) or not path.is_file():
            continue
        if path.suffix in (".wasm", ".png", ".gz") or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="replace")
        citing += [f"{path.relative_to(ROOT)}: {name}" for name in outside if name in text]
    assert not citing, "the project's files must stand alone:\n" + "\n".join(citing)
