"""`wasmlet`: the user's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wasmlet.cli.push import add_parser as add_push_parser
from wasmlet.cli.status import add_parser as add_status_parser


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wasmlet", description="Run WebAssembly workloads the Kubernetes way.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run Pod/WasmWorkload manifests locally with no cluster (standalone agent)",
                         description="Run the Pods and WasmWorkloads of a manifest file or folder with the "
                                     "node agent in standalone mode, then print what each module wrote and "
                                     "how it ended. Run-to-completion Pods are awaited; long-running ones are "
                                     "stopped after --duration seconds.")
    run.add_argument("path", type=Path, help="a manifest file, or a folder of them")
    run.add_argument("--duration", type=float, default=3.0,
                     help="seconds to let long-running Pods run before stopping them (default 3)")
    run.add_argument("--timeout", type=float, default=60.0,
                     help="give up on run-to-completion Pods after this many seconds (default 60)")
    run.add_argument("--state-dir", type=Path, help="agent state (default: a fresh temporary folder)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress lines, only the summary")
    add_push_parser(sub)
    add_status_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        from wasmlet.cli.run import run_command

        return run_command(args)
    if args.command == "push":
        from wasmlet.cli.push import push_command

        return push_command(args)
    if args.command == "status":
        from wasmlet.cli.status import status_command

        return status_command(args)
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
