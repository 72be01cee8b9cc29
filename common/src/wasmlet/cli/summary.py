"""`wasmlet run`'s summary: each Pod, each container, the last lines of its log, and a verdict.

The logs are read back from the same CRI log files `kubectl logs` is served from. Only the last
`--log-lines` lines of each container are shown (a ticker left running for a minute writes
thousands), with a line saying how many were left out.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wasmlet.cli.outcome import Obj, Outcome, container_statuses, plural, state_of
from wasmlet.nodeagent.logs import pod_log_dir, read_lines, run_files

NEVER_STARTED = frozenset({"ContainerCreating", "PodInitializing"})


@dataclass(frozen=True)
class PodReport:
    """What the summary shows of one Pod."""

    name: str  # as written in its manifest (without the node-name suffix static Pods get)
    namespace: str
    pod_name: str  # the Pod's name on the node, under which its logs are kept
    uid: str
    status: Obj
    outcome: Outcome
    stopped_after: float | None  # a service stopped by the run: how long it had run
    # Containers that were running when the run stopped every Pod: how they ended is that stop,
    # so their message (the agent's own, about its shutdown) is left out.
    stopped: frozenset[str] = frozenset()


def print_summary(reports: list[PodReport], logs_dir: Path, log_lines: int) -> None:
    """Every Pod with its containers and log tails, then the verdict (one line per Pod that failed)."""
    if not reports:
        return
    print()
    for report in reports:
        print(header(report))
        for cstatus in container_statuses(report.status):
            print(f"   container {cstatus['name']}: {container_line(cstatus, cstatus['name'] not in report.stopped)}")
            folder = pod_log_dir(logs_dir, report.namespace, report.pod_name, report.uid) / cstatus["name"]
            for line in log_tail(folder, log_lines):
                print(f"   │ {line}")
    failed = [r for r in reports if not r.outcome.ok]
    if not failed:
        print("\n✓ the Pod ended as it should" if len(reports) == 1 else f"\n✓ all {len(reports)} Pods ended as they should")
        return
    print(f"\n✗ {len(failed)} of {plural(len(reports), 'Pod')} did not end as {'it' if len(failed) == 1 else 'they'} "
          "should:")
    for report in failed:
        print(f"  {report.name}: {report.outcome.reason}")


def header(report: PodReport) -> str:
    """`━━ pod NAME: PHASE (REASON: MESSAGE)`, or how the run stopped a service."""
    status = report.status
    if report.stopped_after is not None:
        return f"━━ pod {report.name}: service, stopped by the run after running {_seconds(report.stopped_after)}"
    reason = f" ({status['reason']}: {status.get('message')})" if status.get("reason") else ""
    return f"━━ pod {report.name}: {status.get('phase') or 'Pending'}{reason}"


def container_line(cstatus: Obj, message: bool = True) -> str:
    """How one container ended (or why it never started), its run time and restarts; with the
    message it ended with unless told not to."""
    kind, detail = state_of(cstatus)
    restarts = cstatus.get("restartCount") or 0
    again = f", {plural(restarts, 'restart')}" if restarts else ""
    if kind == "terminated":
        took = _ran(detail.get("startedAt"), detail.get("finishedAt"))
        said = f" — {detail['message']}" if detail.get("message") and message else ""
        return f"exit code {detail.get('exitCode')}, {detail.get('reason')}{took}{again}{said}"
    if kind == "running":
        return f"running{again}"
    reason = detail.get("reason") or ""
    if not reason or reason in NEVER_STARTED:
        return f"never started{again}"
    said = f" — {detail['message']}" if detail.get("message") else ""
    return f"waiting, {reason}{again}{said}"


def log_tail(folder: Path, keep: int) -> Iterator[str]:
    """The last `keep` lines of a container's logs (every run, oldest first), stderr marked `!`."""
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    total = 0
    for _, stream, text in _lines(folder):
        total += 1
        if keep:
            tail.append(f"{'!' if stream == 'stderr' else ' '} {text}")
    if total > len(tail):
        left_out = total - len(tail)
        yield f"  … {plural(left_out, 'earlier line')} left out (--log-lines {keep})"
    yield from tail


def _lines(folder: Path) -> Iterable[tuple[str, str, str]]:
    runs = sorted({int(p.name.split(".", 1)[0]) for p in folder.glob("*.log*") if p.name.split(".", 1)[0].isdigit()})
    for run in runs:
        for path in run_files(folder, run):
            yield from read_lines(path)


def _ran(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    seconds = (dt.datetime.strptime(end, fmt) - dt.datetime.strptime(start, fmt)).total_seconds()
    return f", ran {_seconds(seconds)}"


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 1 else "<1s"
