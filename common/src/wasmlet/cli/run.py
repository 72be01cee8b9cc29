"""`wasmlet run`: the quick start. The real agent, standalone, with a console reporter.

Nothing here is demo-only logic: it is `Agent` with static manifests, a reporter that prints
progress, and a summary read back from the same CRI log files `kubectl logs` would serve.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wasmlet.nodeagent.agent import Agent
from wasmlet.nodeagent.config import AgentSettings
from wasmlet.nodeagent.errors import SettingsError
from wasmlet.nodeagent.lifecycle import FINAL
from wasmlet.nodeagent.logs import pod_log_dir, read_lines
from wasmlet.nodeagent.main import exit_now
from wasmlet.nodeagent.pods import PodRef
from wasmlet.nodeagent.reporting import ConsoleReporter

NODE = "local"
PROGRESS = {"Pulling": "pulling", "Pulled": "pulled", "Started": "started", "Killing": "stopping",
            "BackOff": "backing off", "Failed": "failed"}


def run_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.path.exists():
        print(f"wasmlet run: {args.path} does not exist", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wasmlet-run-") as scratch:
        state = args.state_dir or Path(scratch)
        try:
            settings = AgentSettings(node_name=NODE, node_ip="127.0.0.1", state_dir=state,
                                     manifests=args.path.resolve(), runtimes=("wasmer", "wasmtime"),
                                     serve_kubelet_api=False).validate()
        except SettingsError as exc:
            print(f"wasmlet run: {exc}", file=sys.stderr)
            return 2
        reporter = ConsoleReporter(printer=None if args.quiet else _progress)
        code = asyncio.run(_run(settings, reporter, args.duration, args.timeout))
    return exit_now(code)


async def _run(settings: AgentSettings, reporter: ConsoleReporter, duration: float, timeout: float) -> int:
    agent = Agent(settings, reporter=reporter)
    stop = asyncio.Event()
    runner = asyncio.create_task(agent.run(stop))
    await agent.started.wait()
    await agent.static.synced.wait()
    for problem in agent.static.problems:
        print(f"✗ {problem.path}: {problem.message}")
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        workers = agent.controller.workers() if agent.controller else []
        pending = [w for w in workers if w.state not in FINAL and w.plan.restart_policy != "Always"]
        if not pending and time.monotonic() - started >= duration:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await runner
    return _summary(settings, reporter, agent)


def _progress(ref: PodRef, type_: str, reason: str, message: str, container: str | None) -> None:
    verb = PROGRESS.get(reason)
    if verb is None and type_ != "Warning":
        return
    who = f"{ref.name.removesuffix('-' + NODE)}/{container}" if container else ref.name.removesuffix("-" + NODE)
    mark = "✗" if type_ == "Warning" else "…"
    print(f"{mark} {who}: {verb or reason}: {message}" if type_ == "Warning" or verb in ("pulled",)
          else f"{mark} {who}: {verb}", flush=True)


def _summary(settings: AgentSettings, reporter: ConsoleReporter, agent: Agent) -> int:
    print()
    for ref, status in sorted(reporter.latest.items(), key=lambda item: item[0].name):
        name = ref.name.removesuffix("-" + NODE)
        reason = f" ({status['reason']}: {status.get('message')})" if status.get("reason") else ""
        print(f"━━ pod {name}: {status.get('phase')}{reason}")
        for cstatus in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
            _print_container(settings, ref, cstatus)
    problems = agent.static.problems if agent.static else []
    return 1 if problems else 0


def _print_container(settings: AgentSettings, ref: PodRef, cstatus: dict[str, Any]) -> None:
    state = cstatus.get("state") or {}
    kind, detail = next(iter(state.items()), ("unknown", {}))
    detail = detail if isinstance(detail, dict) else {}
    term: dict[str, Any] = detail if kind == "terminated" else {}
    took = _duration(term.get("startedAt"), term.get("finishedAt"))
    summary = f"exit code {term['exitCode']}, {term.get('reason')}" if term else f"{kind} {detail.get('reason', '')}"
    message = f" — {term['message']}" if term.get("message") else ""
    restarts = f", {cstatus['restartCount']} restarts" if cstatus.get("restartCount") else ""
    print(f"   container {cstatus['name']}: {summary}{took}{restarts}{message}")
    log_dir = pod_log_dir(settings.state_dir / "logs", ref.namespace, ref.name, ref.uid) / cstatus["name"]
    for log_file in sorted(log_dir.glob("*.log"), key=lambda p: int(p.stem)):
        for _, stream, text in read_lines(log_file):
            print(f"   │ {'!' if stream == 'stderr' else ' '} {text}")


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    seconds = (dt.datetime.strptime(end, fmt) - dt.datetime.strptime(start, fmt)).total_seconds()
    return f", ran {seconds:.0f}s" if seconds >= 1 else ", ran <1s"
