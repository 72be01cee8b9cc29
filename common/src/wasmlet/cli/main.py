"""`wasmlet`: the user's command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wasmlet.cli.push import add_parser as add_push_parser
from wasmlet.cli.status import add_parser as add_status_parser


def seconds(flag: str, *, positive: bool) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds (> 0 when `positive`, else >= 0)."""
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"{raw!r}: must be a finite number of seconds "
                                             f"{'greater than 0' if positive else '0 or more'}")
        return value
    parse.__name__ = flag  # argparse names the type in some messages
    return parse


def count(raw: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r}: must be 0 or more")
    return value


def add_run_parser(sub: Any) -> None:
    """`wasmlet run`: its flags, each validated as it is parsed (argparse names the flag on error)."""
    run = sub.add_parser(
        "run", help="run Pod/WasmWorkload manifests locally with no cluster (standalone agent)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the Pods and WasmWorkloads of a manifest file or folder with the node agent in "
                    "standalone mode, then print how each Pod ended, with the last lines each container wrote.",
        epilog="""\
How long it runs:
  Run-to-completion Pods (restartPolicy Never or OnFailure) are awaited until they end.
  Services (restartPolicy Always, the default) run --duration seconds once running; then
  each is stopped within its terminationGracePeriodSeconds (30 unless the Pod says).
  The run ends as soon as nothing is left to wait for; a Pod that cannot go on without
  you (a module that cannot be pulled, a missing ConfigMap) ends the wait at once.

Exit code:
  0  every Pod ended as it should: run-to-completion Pods Succeeded, services were
     running when the run stopped them
  1  a Pod did not (one line per Pod says why), a manifest could not be used, or
     --timeout passed first
  2  bad flags or PATH
  130  interrupted: the first Ctrl-C stops every Pod within its grace period and prints
     the summary; a second one stops at once""")
    run.add_argument("path", type=Path, help="a manifest file (*.yaml, *.yml, *.json), or a folder of them")
    run.add_argument("--duration", type=seconds("--duration", positive=False), default=3.0, metavar="SECONDS",
                     help="how long services run, counted from when each is running (default: %(default)g)")
    run.add_argument("--timeout", type=seconds("--timeout", positive=True), default=60.0, metavar="SECONDS",
                     help="give up on Pods that have not finished, or services that are not running, after "
                          "this long; every Pod is then stopped (default: %(default)g)")
    run.add_argument("--log-lines", type=count, default=20, metavar="N",
                     help="show the last N lines each container wrote (default: %(default)s)")
    run.add_argument("--state-dir", type=Path, metavar="DIR",
                     help="agent state: module cache, Pod folders, logs (default: a fresh temporary folder, "
                          "removed afterwards)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress lines, only the summary")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wasmlet", description="Run WebAssembly workloads the Kubernetes way.")
    p.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('wasmlet')}")
    sub = p.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    add_push_parser(sub)
    add_status_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        try:
            from wasmlet.cli.run import run_command

            return run_command(args)
        except KeyboardInterrupt:  # before the run handles Ctrl-C itself: nothing started yet
            return 130
    if args.command == "push":
        from wasmlet.cli.push import push_command

        return push_command(args)
    if args.command == "status":
        from wasmlet.cli.status import status_command

        return status_command(args)
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
