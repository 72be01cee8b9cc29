"""OperatorSettings: one frozen object, from defaults < `WASMLET_*` environment < flags.

Validated once at start; a bad value fails with the setting's name (`WASMLET_RESYNC_SECONDS`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "WASMLET_"


class SettingsError(ValueError):
    """A setting has an unusable value; the message names it."""


def _setting(default: Any, help: str, *, metavar: str | None = None) -> Any:
    """A dataclass field carrying its --help text (one source for the docs of each setting)."""
    return field(default=default, metadata={"help": help, "metavar": metavar})


@dataclass(frozen=True)
class OperatorSettings:
    """Everything the operator can be told. Each field's help says why its default is what it is."""

    kubeconfig: str | None = _setting(
        None, "kubeconfig file or bare API URL; unset: $KUBECONFIG, in-cluster, ~/.kube/config "
              "(kubectl's order)", metavar="PATH")
    context: str | None = _setting(
        None, "the kubeconfig context to use, as kubectl's --context; unset: its current-context", metavar="NAME")
    namespace: str | None = _setting(
        None, "watch WasmWorkloads in this namespace only; unset: cluster-wide (the chart's default)",
        metavar="NS")
    verbose: bool = _setting(False, "debug logging (kopf's and ours)")
    resync_seconds: float = _setting(
        300.0, "reconcile every workload this often even without events; events drive everything, "
               "this only bounds how long a missed one can matter", metavar="SECONDS")
    retry_seconds: float = _setting(
        5.0, "first delay before retrying a failed reconcile (doubles up to 5 minutes)", metavar="SECONDS")
    watch_timeout_seconds: int = _setting(
        300, "server-side timeout of the watch requests (kopf's and the caches'): a silent connection is "
             "noticed this fast", metavar="SECONDS")
    liveness_endpoint: str | None = _setting(
        None, "serve kopf's liveness probe here, e.g. http://0.0.0.0:8080/healthz; unset: none",
        metavar="URL")
    metrics_endpoint: str | None = _setting(
        None, "serve Prometheus metrics here, e.g. http://0.0.0.0:9090/metrics; unset: none (like the "
              "liveness endpoint, the deployment opens the port)", metavar="URL")
    peering_name: str = _setting(
        "wasmlet", "the ClusterKopfPeering (cluster-wide) or KopfPeering (namespaced) through which replicas "
                   "agree that one of them is active (created if missing; its CRDs are in crds/)", metavar="NAME")
    standalone: bool = _setting(
        False, "no peering: nothing keeps a second replica from acting too, so run exactly one (and without "
               "the peering CRDs)")
    peering_priority: int | None = _setting(
        None, "this replica's peering priority; the highest live one is active, equal ones all pause (kopf's "
              "rule); unset: a random one in 1..999999999, distinct per replica. Above that range a replica "
              "takes over from the deployed ones (e.g. to debug)", metavar="N")

    def __post_init__(self) -> None:
        for name in ("resync_seconds", "retry_seconds", "watch_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{_env_name(name)} / --{_flag(name)}: must be > 0, got {getattr(self, name)!r}")
        if not self.peering_name and not self.standalone:
            raise SettingsError(f"{_env_name('peering_name')} / --peering-name: must not be empty (or set --standalone)")
        for name in ("liveness_endpoint", "metrics_endpoint"):
            url = getattr(self, name)
            if url is not None and not url.startswith("http://"):
                raise SettingsError(f"{_env_name(name)} / --{_flag(name)}: must be an http:// URL, got {url!r}")

    @property
    def clusterwide(self) -> bool:
        """No namespace given: watch every namespace."""
        return self.namespace is None


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Build the settings from the environment and the command line (`wasmlet-operator --help`)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(OperatorSettings):
        raw = environ.get(_env_name(f.name))
        if raw is not None and raw != "":
            values[f.name] = _convert(f, raw, _env_name(f.name))
    args = build_parser().parse_args(argv)
    for f in dataclasses.fields(OperatorSettings):
        flag_value = getattr(args, f.name)
        if isinstance(flag_value, str):
            values[f.name] = _convert(f, flag_value, f"--{_flag(f.name)}")
        elif flag_value is not None:
            values[f.name] = flag_value
    return OperatorSettings(**values)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per setting; the environment variable is named in the help."""
    parser = argparse.ArgumentParser(
        prog="wasmlet-operator",
        description="The wasmlet operator: turns WasmWorkloads into Pods on wasm nodes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('wasmlet')}")
    for f in dataclasses.fields(OperatorSettings):
        # A default worth naming: not unset (None) and not a switch that is off.
        shown = f"{f.default:g}" if isinstance(f.default, float) else f.default
        default = f"default {shown}; " if f.default not in (None, False, dataclasses.MISSING) else ""
        help_text = f"{f.metadata['help']} ({default}env {_env_name(f.name)})"
        if f.type in ("bool", bool):
            parser.add_argument(f"--{_flag(f.name)}", dest=f.name, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(f"--{_flag(f.name)}", dest=f.name, metavar=f.metadata["metavar"], help=help_text)
    parser.add_argument("--check-config", action="store_true",
                        help="validate the settings and credentials, print them, and exit (connects to nothing)")
    return parser


def _convert(f: dataclasses.Field[Any], raw: str, source: str) -> Any:
    kind = str(f.type).removesuffix(" | None")
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
    except ValueError:
        raise SettingsError(f"{source}: not a valid {kind}: {raw!r}") from None
    return raw


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _flag(name: str) -> str:
    return name.replace("_", "-")
