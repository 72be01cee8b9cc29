"""`wasmlet-agent`: the command line of the node agent."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from wasmlet.kube.config import ConfigError, load_config
from wasmlet.nodeagent import VERSION
from wasmlet.nodeagent.agent import Agent
from wasmlet.nodeagent.config import AgentSettings, load_settings
from wasmlet.nodeagent.cpus import LOOP
from wasmlet.nodeagent.errors import SettingsError

log = logging.getLogger(__name__)
DEFAULTS = AgentSettings(node_name="-", node_ip="-")  # for --help: the settings' own defaults

# glibc keeps a cache of freed chunks per thread (tcache). wasmer-sdk runs its processes on ~200
# native threads whose caches pin freed memory: under Pod churn the agent's RSS crept ~250 bytes
# per Pod, and with tcache off the same churn is flat and no slower (bench/RESULTS.md, soak).
# Tunables are read only as a process starts, so the agent starts itself again, once, with it.
# A GLIBC_TUNABLES that sets glibc.malloc.tcache_count already (7 is glibc's default) opts out.
MALLOC_TUNABLE = "glibc.malloc.tcache_count=0"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wasmlet-agent",
        description="A kubelet for WebAssembly: registers a Node and runs the wasm Pods bound to it. "
                    "Every flag can also be set as WASMLET_<NAME> (e.g. WASMLET_NODE_NAME) or in --config.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    p.add_argument("--config", type=Path, help="YAML file of settings (keys as the flags, with _ or -)")
    p.add_argument("--kubeconfig", help="kubeconfig path or API URL (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    p.add_argument("--bootstrap-kubeconfig",
                   help="TLS bootstrap, as the kubelet's: credentials (a kubeconfig path, or in-cluster) used only to "
                        "request this node's client certificate; the node kubeconfig is written to --kubeconfig")
    p.add_argument("--min-host-port", type=int, help="lowest port a Pod may serve on (default 1024)")
    p.add_argument("--context", help="kubeconfig context to use (default: its current-context)")
    p.add_argument("--node-name", help="the Node's name (default: the hostname)")
    p.add_argument("--node-ip", help="the Node's InternalIP (default: the address of the default route)")
    p.add_argument("--kubelet-port", type=int, help=f"port of the kubelet API (default {DEFAULTS.kubelet_port})")
    p.add_argument("--state-dir", type=Path, help=f"module cache, Pod state and logs (default {DEFAULTS.state_dir})")
    p.add_argument("--manifests", type=Path,
                   help="folder of static Pod/WasmWorkload manifests; without an API server: standalone mode")
    p.add_argument("--node-label", action="append", metavar="KEY=VALUE", help="extra Node label (repeatable)")
    p.add_argument("--max-pods", type=int, help=f"Pods this node accepts (default {DEFAULTS.max_pods})")
    p.add_argument("--runtimes", help=f"comma-separated runtimes to offer (default {','.join(DEFAULTS.runtimes)})")
    p.add_argument("--kubelet-api-auth", choices=("webhook", "none"),
                   help="who may read logs/pods/metrics: webhook (client certificate or TokenReview; default) "
                        "or none (explicit opt-out, for standalone use)")
    p.add_argument("--kubelet-api-authorization", choices=("webhook", "always-allow"),
                   help="what an authenticated caller may do: webhook (a SubjectAccessReview, as the kubelet asks; "
                        "default) or always-allow")
    p.add_argument("--metaserver", action="store_const", const=True,
                   help="the API endpoint is KubeEdge's MetaServer: trust its lists and copies only as a cache's")
    p.add_argument("--client-ca-file", type=Path, help="CA of the API server's kubelet-client certificate (default: the cluster CA "
                                                               "of the agent's kubeconfig or service account)")
    p.add_argument("--event-loop-cpu", choices=("pinned", "any"),
                   help="pinned (default): keep the event loop on one CPU, moving when it is busy, with HTTP request "
                        "instances beside it; any: let the scheduler place every thread")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.add_argument("--check-config", action="store_true",
                   help="validate the settings and credentials, print them, and exit (connects to nothing)")
    return p


def settings_from_args(args: argparse.Namespace) -> AgentSettings:
    flags = {
        "kubeconfig": args.kubeconfig, "context": args.context, "node_name": args.node_name, "node_ip": args.node_ip,
        "kubelet_port": args.kubelet_port, "state_dir": args.state_dir, "manifests": args.manifests,
        "node_labels": args.node_label, "max_pods": args.max_pods, "runtimes": args.runtimes,
        "kubelet_api_auth": args.kubelet_api_auth, "client_ca_file": args.client_ca_file,
        "bootstrap_kubeconfig": args.bootstrap_kubeconfig, "min_host_port": args.min_host_port,
        "kubelet_api_authorization": args.kubelet_api_authorization,
        "metaserver": args.metaserver, "event_loop_cpu": args.event_loop_cpu,
    }
    return load_settings(args.config, dict(os.environ), flags)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"wasmlet-agent: invalid setting: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        return check_config(settings)
    if argv is None:  # the command line, not a caller in this process
        restart_with_malloc_tunable()
    try:
        asyncio.run(_run(settings))
    except ConfigError as exc:
        print(f"wasmlet-agent: {exc}", file=sys.stderr)
        return 2
    return exit_now(0)


def check_config(settings: AgentSettings) -> int:
    """`--check-config`: print the effective settings and the API endpoint they lead to."""
    for name, value in sorted(vars(settings).items()):
        print(f"{name}: {value}")
    try:
        if settings.standalone:
            print("api: none (standalone)")
        elif settings.bootstrap_kubeconfig is not None:  # the node kubeconfig may not exist yet
            source = settings.bootstrap_kubeconfig
            print(f"api: {load_config(None if source == 'in-cluster' else source).server} (TLS bootstrap)")
        else:
            print(f"api: {load_config(settings.kubeconfig, settings.context).server}")
    except ConfigError as exc:
        print(f"wasmlet-agent: {exc}", file=sys.stderr)
        return 2
    return 0


def malloc_environment(environ: Mapping[str, str], libc: str | None) -> dict[str, str] | None:
    """The environment to start the agent again with (`MALLOC_TUNABLE` added), or None when there
    is nothing to do: not glibc, or its tcache is set already."""
    current = environ.get("GLIBC_TUNABLES", "")
    if not (libc or "").startswith("glibc") or "glibc.malloc.tcache_count" in current:
        return None
    return {**environ, "GLIBC_TUNABLES": f"{current}:{MALLOC_TUNABLE}" if current else MALLOC_TUNABLE}


def restart_with_malloc_tunable() -> None:
    """Replace this process with the same command under `MALLOC_TUNABLE`, unless it runs so already."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        libc = None
    environment = malloc_environment(os.environ, libc)
    if environment is None:
        return
    try:
        os.execve(sys.executable, sys.orig_argv, environment)
    except OSError as exc:
        log.warning("could not restart with %s (%s); memory may creep under Pod churn", MALLOC_TUNABLE, exc)


async def _run(settings: AgentSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.event_loop_cpu == "pinned":  # here, not in Agent: a process's placement, not a library's
        LOOP.pin(loop)
    balance = asyncio.create_task(LOOP.balance())
    try:
        await Agent(settings).run(stop)
    finally:
        balance.cancel()
        await asyncio.gather(balance, return_exceptions=True)


def exit_now(code: int) -> int:
    """Exit without running native finalizers once a runtime was loaded.

    wasmer-sdk's native threads occasionally abort the interpreter at exit ("FATAL: exception
    not rethrown", status 134) after a clean shutdown; everything of ours is flushed and closed
    by now, so leave before the interpreter tears those threads down.
    """
    if "wasmer_sdk" in sys.modules:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
