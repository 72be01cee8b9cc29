"""`wasmlet run`: the quick start. The real agent, standalone, with a console reporter.

Nothing here is demo-only logic: it is `Agent` with static manifests, a reporter that prints
progress, and a summary read back from the same CRI log files `kubectl logs` would serve.

The run waits while there is something to wait for (`outcome.waiting_for`): run-to-completion
Pods until they end, services for `--duration` seconds of running; a Pod that needs the user
ends the wait at once, and `--timeout` bounds it. Then every Pod is stopped within its grace
period, as the agent stops at shutdown. The first Ctrl-C (or SIGTERM) does the same at once;
a second one leaves without waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wasmlet.cli.outcome import Obj, container_statuses, is_running, is_service, outcome, plural, state_of, waiting_for
from wasmlet.cli.stderr import NativeStderrFilter
from wasmlet.cli.summary import PodReport, print_summary
from wasmlet.nodeagent.agent import Agent
from wasmlet.nodeagent.config import AgentSettings
from wasmlet.nodeagent.errors import SettingsError
from wasmlet.nodeagent.main import exit_now
from wasmlet.nodeagent.pods import PodRef
from wasmlet.nodeagent.reporting import ConsoleReporter
from wasmlet.nodeagent.sources import MANIFEST_SUFFIXES

NODE = "local"
PROGRESS = {"Pulling": "pulling", "Pulled": "pulled", "Started": "started", "Killing": "stopping",
            "BackOff": "backing off", "Failed": "failed"}
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class RunOptions:
    """The validated flags of one run."""

    path: Path
    duration: float
    timeout: float
    log_lines: int
    quiet: bool


def run_command(args: argparse.Namespace) -> int:
    """`wasmlet run PATH`: 0 when every Pod ended as it should, 1 when one did not, 2 for bad input."""
    options = RunOptions(args.path, args.duration, args.timeout, args.log_lines, args.quiet)
    problem = path_problem(options.path)
    if problem is not None:
        return _usage_error(problem)
    with tempfile.TemporaryDirectory(prefix="wasmlet-run-") as scratch:
        state = args.state_dir or Path(scratch)
        try:
            settings = AgentSettings(node_name=NODE, node_ip="127.0.0.1", state_dir=state,
                                     manifests=options.path.resolve(), runtimes=("wasmer", "wasmtime"),
                                     serve_kubelet_api=False).validate()
            state.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=state).close()  # writable: found now, not by the first Pod
        except OSError as exc:
            return _usage_error(f"--state-dir {state}: cannot create or write it: {exc.strerror or exc}")
        except SettingsError as exc:
            return _usage_error(str(exc).replace("state_dir:", "--state-dir:", 1))
        with NativeStderrFilter() as stderr:
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
            # The run prints each unusable manifest itself (✗ lines); the agent's log line would repeat it.
            logging.getLogger("wasmlet.nodeagent.sources").setLevel(logging.CRITICAL)
            run = LocalRun(settings, options, at_once=stderr.close)
            code = asyncio.run(run.main())
    return exit_now(code)


def path_problem(path: Path) -> str | None:
    """What is wrong with PATH as a manifest file or folder, before anything starts."""
    suffixes = ", ".join(f"*{s}" for s in MANIFEST_SUFFIXES)
    if not path.exists():
        return f"{path} does not exist"
    if path.is_file() and path.suffix == ".wasm":
        return (f"{path} is a wasm module, not a manifest: run it from a Pod whose image is "
                f"file:<path to {path.name}> (relative to the manifest), as examples/workloads/hello.yaml does")
    if path.is_file() and path.suffix not in MANIFEST_SUFFIXES:
        return f"{path} is not a manifest ({suffixes})"
    if path.is_dir() and not any(p.suffix in MANIFEST_SUFFIXES and p.is_file() for p in path.iterdir()):
        return f"{path} holds no manifests ({suffixes}): nothing to run"
    return None


def _usage_error(message: str) -> int:
    print(f"wasmlet run: {message}", file=sys.stderr)
    return 2


class LocalRun:
    """One `wasmlet run`: starts the agent, waits while there is something to wait for, stops it."""

    def __init__(self, settings: AgentSettings, options: RunOptions,
                 at_once: Callable[[], None] | None = None) -> None:
        self.options = options
        self.settings = settings
        self.reporter = ConsoleReporter(printer=None if options.quiet else self._progress)
        self.agent = Agent(settings, reporter=self.reporter)
        self.stop = asyncio.Event()
        self.interrupts = 0
        self._at_once = at_once
        self._warned: set[tuple[str, str, str]] = set()
        self.running_since: dict[str, float] = {}
        self.stopped_after: dict[str, float] = {}  # services stopped while running: seconds they ran
        self.gave_up: set[str] = set()
        self.before_stop: dict[str, Obj] = {}  # every Pod's status just before the run stopped them

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._interrupt)
        runner = asyncio.create_task(self.agent.run(self.stop))
        started = time.monotonic()
        failure = await self._start(runner)
        if failure is None:
            for problem in self.agent.static.problems:
                print(f"{'⚠' if problem.warning else '✗'} {problem.path}: {problem.message}", flush=True)
            await self._wait(runner, started)
        self._stop_everything()
        try:
            await runner
        except Exception as exc:  # the agent's own failure: say what it was, then summarise what ran
            failure = f"the agent stopped: {type(exc).__name__}: {exc}"
        if failure is not None:
            print(f"wasmlet run: {failure}", file=sys.stderr, flush=True)
        return self._finish(failure)

    async def _start(self, runner: asyncio.Task[None]) -> str | None:
        """Wait until the agent has read the manifests; what went wrong if it could not."""
        async def ready() -> None:
            await self.agent.started.wait()
            await self.agent.static.synced.wait()

        waiter = asyncio.create_task(ready())
        stopped = asyncio.create_task(self.stop.wait())
        await asyncio.wait({runner, waiter, stopped}, timeout=self.options.timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopped):
            task.cancel()
        if waiter.done() and not waiter.cancelled():
            return None
        if runner.done():
            return "the agent stopped before it read the manifests"  # its exception, if any, replaces this
        if self.stop.is_set():
            return "interrupted before the agent started"
        return f"the agent did not start within {self.options.timeout:g}s (--timeout)"

    async def _wait(self, runner: asyncio.Task[None], started: float) -> None:
        while not self.stop.is_set() and not runner.done():
            now = time.monotonic()
            pending = self._pending(now)
            if not pending:
                return
            if now - started >= self.options.timeout:
                self.gave_up = {uid for uid, service in pending.items() if uid not in self.running_since or not service}
                if self.gave_up:
                    return
            await asyncio.sleep(POLL_SECONDS)

    def _pending(self, now: float) -> dict[str, bool]:
        """The Pods still waited for: {uid: is a service}."""
        pending: dict[str, bool] = {}
        for pod in self._pods():
            uid, spec, status = pod["metadata"]["uid"], pod.get("spec") or {}, pod.get("status") or {}
            service = is_service(spec)
            if service and status.get("phase") == "Running":
                self.running_since.setdefault(uid, now)
            since = self.running_since.get(uid)
            if waiting_for(status, service, None if since is None else now - since, self.options.duration):
                pending[uid] = service
        return pending

    def _pods(self) -> list[Obj]:
        controller = self.agent.controller
        return controller.pods() if controller is not None else []

    def _stop_everything(self) -> None:
        """Stop every Pod (each within its grace period), saying which services the run stops."""
        services = self._snapshot()
        if services and not self.options.quiet and not self.stop.is_set():
            print(f"… stopping {plural(len(services), 'service')} after --duration {self.options.duration:g}s, "
                  f"each within its grace period ({', '.join(services)})", flush=True)
        self.stop.set()

    def _snapshot(self) -> list[str]:
        """Once, just before the stop: every Pod's status, and which services were running
        (`name grace`), before stopping changes them."""
        if self.before_stop:
            return []
        now = time.monotonic()
        services = []
        for pod in self._pods():
            uid, spec, status = pod["metadata"]["uid"], pod.get("spec") or {}, pod.get("status") or {}
            self.before_stop[uid] = status
            if is_service(spec) and is_running(status) and uid in self.running_since:
                self.stopped_after[uid] = now - self.running_since[uid]
                services.append(f"{_short(pod['metadata']['name'])} {spec.get('terminationGracePeriodSeconds', 30)}s")
        return services

    def _finish(self, failure: str | None) -> int:
        """Print the summary; the exit code."""
        reports = self._reports()
        print_summary(reports, self.settings.state_dir / "logs", self.options.log_lines)
        problems = [p for p in (self.agent.static.problems if self.agent.static else []) if not p.warning]
        if not reports and failure is None:
            print(f"wasmlet run: no Pods to run in {self.options.path}", file=sys.stderr)
        if self.interrupts:
            return EXIT_INTERRUPTED
        ok = reports and all(r.outcome.ok for r in reports) and not problems and failure is None
        return 0 if ok else 1

    def _reports(self) -> list[PodReport]:
        specs = {p["metadata"]["uid"]: p.get("spec") or {} for p in self._pods()}
        reports = []
        for ref, status in sorted(self.reporter.latest.items(), key=lambda item: item[0].name):
            service = is_service(specs.get(ref.uid, {}))
            verdict = outcome(status, service, stopped_running=ref.uid in self.stopped_after,
                              gave_up_after=self.options.timeout if ref.uid in self.gave_up else None,
                              interrupted=self.interrupts > 0, before_stop=self.before_stop.get(ref.uid))
            running = frozenset(c["name"] for c in container_statuses(self.before_stop.get(ref.uid, {}))
                                if state_of(c)[0] == "running")
            reports.append(PodReport(_short(ref.name), ref.namespace, ref.name, ref.uid, status, verdict,
                                     self.stopped_after.get(ref.uid), running))
        return reports

    def _interrupt(self) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self._pending(time.monotonic())  # note services that became Running since the last look
            self._snapshot()
            print("\n… stopping: every Pod gets its grace period (Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)
            self.stop.set()
            return
        print("\nwasmlet run: stopped at once; Pods did not get their grace periods", file=sys.stderr, flush=True)
        self._finish("stopped at once")
        sys.stdout.flush()
        if self._at_once is not None:
            self._at_once()
        if self.settings.state_dir.name.startswith("wasmlet-run-"):
            shutil.rmtree(self.settings.state_dir, ignore_errors=True)
        os._exit(EXIT_INTERRUPTED)

    def _progress(self, ref: PodRef, type_: str, reason: str, message: str, container: str | None) -> None:
        verb = PROGRESS.get(reason)
        if verb is None and type_ != "Warning":
            return
        if type_ == "Warning":
            # The kubelet's event recorder folds repeats into one Event with a count; so does this.
            if (ref.uid, reason, message) in self._warned:
                return
            self._warned.add((ref.uid, reason, message))
        who = f"{_short(ref.name)}/{container}" if container else _short(ref.name)
        mark = "✗" if type_ == "Warning" else "…"
        print(f"{mark} {who}: {verb or reason}: {message}" if type_ == "Warning" or verb in ("pulled",)
              else f"{mark} {who}: {verb}", flush=True)


def _short(name: str) -> str:
    """A static Pod's name as its manifest wrote it (the agent appends the node's name)."""
    return name.removesuffix("-" + NODE)
