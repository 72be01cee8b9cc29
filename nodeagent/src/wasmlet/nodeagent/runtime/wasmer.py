"""The default backend, on the `wasmer-sdk` package (docs/runtimes.md), run in worker processes.

What Wasmer can and cannot do decides the shape of this module:
- wasmer-sdk stops a module only at a host call (a busy loop spins on after every stop, until
  its process exits) and has no memory limit (docs/wasmer-sdk.md §4, §6). So no module runs in
  the agent: each Pod gets a worker process (`wasmer_worker`) of its own, that the agent kills
  when the Pod ends (deadline, grace period, deletion) and that is capped at the Pod's memory
  (`wasmer_memory`: the sum of its containers' `limits.memory`, or the node's cap). Together the
  workers may not pass the node's cap either: past it, the one using most is killed `OOMKilled`.
- Workers are forked from a fork server that imported wasmer-sdk once (`wasmer_forkserver`), and
  a few idle workers are kept ready, warmed up, with the node's recent modules loaded
  (`wasmer_pool`; they also compile modules at pull time into the shared compiled cache), so a
  Pod's start does not wait for a process to start. A worker whose Pod's modules all ended by
  themselves (nothing the agent stopped, which might spin on) is reset and kept for the next Pod
  of the same namespace instead of being killed: run-to-completion Pods start without a fork.
- A sandbox's own files must live under `/workspace`; package files may sit at any absolute
  guest path as read-only overlays. So read-only volumes (configMap, secret, a read-only mount)
  become package files at their mountPath, and writable volumes must be mounted under
  `/workspace`, where the Pod's containers share one sandbox (an emptyDir shared in the Pod).
- There are no host-directory mounts: a Pod asking for one fails with a reason that names the
  field and the runtime that supports it.
- WASI 0.2 components do not run: wasmer-sdk 0.5 refuses them ("WebAssembly components are
  not supported by the sandbox command runner"). A Pod whose module is a component fails
  `UnsupportedComponent`, naming the wasmtime runtime, which runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import os
import re
from pathlib import Path

from wasmlet.nodeagent.errors import ModuleError, PodConfigError, UnsupportedPod
from wasmlet.nodeagent.runtime import EXIT_KILLED, ExitStatus, Mount, OutputSink, RunSpec
from wasmlet.nodeagent.runtime.beneath import TooLarge, UnsafePath, open_mount, regular_files
from wasmlet.nodeagent.runtime.wasmer_forkserver import ForkServer
from wasmlet.nodeagent.runtime.wasmer_memory import node_victim
from wasmlet.nodeagent.runtime.wasmer_pool import SparePool
from wasmlet.nodeagent.runtime.wasmer_process import WasmerInstance, WorkerProcess
from wasmlet.nodeagent.runtime.wasmer_protocol import pack_files
from wasmlet.nodeagent.validation import go_quoted
from wasmlet.nodeagent.wasmbinary import kind_of

log = logging.getLogger(__name__)

WORKSPACE = "/workspace"
_COMMAND_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
# A volume becomes in-memory package files: bound what one Pod may put there.
MAX_VOLUME_BYTES = 64 * 1024 * 1024
# How often the workers' memory is summed against the node's cap (each worker checks its own cap
# far more often, itself).
NODE_CHECK_SECONDS = 0.5
# A worker that used this share of a core after its last module was stopped runs a module the
# SDK could not stop (a busy loop): it is killed, so the core comes back while the Pod lives on.
SPIN_SAMPLE_SECONDS, SPIN_CPU_SHARE = 0.5, 0.5
# A worker whose Pod ended runs another Pod of its namespace only under these bounds: a worker
# that grew (the SDK keeps freed memory) or ran many Pods ends, and a fresh one takes its place.
REUSE_MAX_BYTES = 32 * 1024 * 1024
REUSE_PODS = 1000
COMPONENT_CHECKS_KEPT = 1024


class WasmerRuntime:
    """Runs WASI modules in Wasmer sandboxes: one worker process (and sandbox) per Pod."""

    name = "wasmer"

    def __init__(self, cache_dir: Path, allocatable_memory: int | None = None) -> None:
        self.version = f"wasmer-sdk/{importlib.metadata.version('wasmer-sdk')}"
        self._cache_dir = cache_dir
        self.node_cap = allocatable_memory or _memory_total()
        self._workers: dict[str, WorkerProcess] = {}
        self._claims: dict[str, asyncio.Future[WorkerProcess]] = {}  # a Pod's spare, on its way
        self._namespaces: dict[str, str] = {}  # a Pod's namespace, by UID, while it has a worker
        self._pool = SparePool(self._fork)
        self._prepared: set[str] = set()
        self._components: dict[str, bool] = {}  # what each module digest is, read once (HTTP starts many)
        self._spin_checks: dict[WorkerProcess, asyncio.Task[None]] = {}
        self._node_check: asyncio.Task[None] | None = None
        self._server: ForkServer | None = None
        self._server_lock = asyncio.Lock()

    def check(self, spec: RunSpec) -> None:
        if self._module_is_component(spec.module_path, spec.module_digest):
            raise UnsupportedPod(
                f"container {spec.container!r}: the module is a WebAssembly component (WASI 0.2), and the wasmer "
                "runtime runs only core modules (wasip1); use runtimeClassName: wasmtime, which runs components",
                reason="UnsupportedComponent")
        if spec.working_dir:
            # Measured: the sandbox's cwd does not move a wasip1 module's relative paths (docs/wasmer-sdk.md).
            raise UnsupportedPod(
                f"container {spec.container!r}: workingDir cannot be honoured by the wasmer runtime; use "
                "runtimeClassName: wasmtime, which preopens it as the module's current directory",
                reason="UnsupportedField")
        for mount in spec.mounts:
            if mount.volume_type in ("hostPath", "persistentVolumeClaim"):
                raise UnsupportedPod(
                    f"container {spec.container!r}: volumeMounts mountPath {mount.guest_path!r} is a "
                    f"{mount.volume_type} volume (a host directory), "
                    "and the wasmer runtime cannot mount host directories; use runtimeClassName: wasmtime, which "
                    "preopens them", reason="UnsupportedField")
            if not mount.read_only and not _under_workspace(mount.guest_path):
                raise UnsupportedPod(
                    f"container {spec.container!r}: volumeMounts mountPath {mount.guest_path!r} is writable, and the "
                    f"wasmer runtime can only give writable volumes under {WORKSPACE}; mount it there, make it "
                    "readOnly, or use runtimeClassName: wasmtime", reason="UnsupportedField")

    def _module_is_component(self, module_path: Path, digest: str) -> bool:
        known = self._components.get(digest)
        if known is None:
            if len(self._components) >= COMPONENT_CHECKS_KEPT:
                self._components.clear()
            known = self._components[digest] = _is_component(module_path)
        return known

    async def prepare(self, module_path: Path, digest: str) -> None:
        """Compile the module in the spare worker (a hostile module's compile cannot hurt the agent)."""
        if digest in self._prepared:
            return
        if await asyncio.to_thread(_is_component, module_path):
            return  # not an image problem: check() fails the Pod, naming the runtime that runs it
        error = await self._pool.prepare(module_path, digest)
        if error is not None:
            raise ModuleError(error, reason="InvalidModule")
        self._prepared.add(digest)

    async def start(self, spec: RunSpec, output: OutputSink) -> WasmerInstance:
        self.check(spec)
        self._namespaces[spec.pod_uid] = spec.pod_namespace
        worker = await self._worker(spec.pod_uid, spec.pod_namespace)
        command = command_name(spec.argv[0] if spec.argv else "")
        self._pool.remember(spec.module_path, spec.module_digest, command)
        # Volumes under /workspace are sandbox files (a package file there would be hidden by the
        # workspace), read when the Pod's sandbox is made; the others, read-only by check(), are
        # package files at their mountPath.
        workspace = [m for m in spec.mounts if _under_workspace(m.guest_path)]
        packaged = [m for m in spec.mounts if not _under_workspace(m.guest_path)]
        files, files_bytes = pack_files(_collect_files(packaged, spec.container))
        sandbox_files, sandbox_bytes = pack_files({} if worker.sandboxed else _collect_files(workspace, spec.container))
        message = {
            "module": str(spec.module_path), "digest": spec.module_digest,
            "command": command, "argv": spec.argv[1:], "env": spec.env,
            "network": spec.network, "files": files, "workspace": sandbox_files,
            "dirs": [m.guest_path for m in workspace], "memory": spec.memory_limit_bytes,
            "capture": spec.capture_limit,
        }
        instance = await worker.start(message, files_bytes + sandbox_bytes + (spec.stdin or b""), output,
                                      spec.memory_limit_bytes)
        instance.after_stop = lambda: self._check_spin(instance)
        if self._node_check is None:
            self._node_check = asyncio.create_task(self._check_node_memory())
        return instance

    async def release(self, pod_uid: str) -> None:
        """End the Pod's worker (a module the SDK could not stop ends with it), or, when every
        module of the Pod ended by itself, give it back for the next Pod of its namespace."""
        namespace = self._namespaces.pop(pod_uid, "")
        worker = self._workers.pop(pod_uid, None)
        claim = self._claims.pop(pod_uid, None)
        if claim is not None:  # its worker is still on its way: it will not be the Pod's
            claimed = await asyncio.gather(claim, return_exceptions=True)
            worker = claimed[0] if isinstance(claimed[0], WorkerProcess) else worker
        if worker is not None:
            check = self._spin_checks.pop(worker, None)
            if check is not None:
                check.cancel()
                await asyncio.gather(check, return_exceptions=True)
            if (self._reusable(worker) and await worker.recycle(self._pool.recent())
                    and self._pool.give_back(namespace, worker)):
                return
            await worker.close()

    @staticmethod
    def _reusable(worker: WorkerProcess) -> bool:
        """A worker may run another Pod when nothing of its Pod runs or may still run in it (the
        agent never stopped a running module: the SDK may leave one spinning), it keeps little
        memory, and it has not run `REUSE_PODS` Pods already."""
        return (worker.alive and not worker.instances and not worker.stopped_running
                and worker.pods < REUSE_PODS and worker.charged_bytes() <= REUSE_MAX_BYTES)

    async def close(self) -> None:
        tasks = [t for t in (self._node_check, *self._spin_checks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._node_check = None
        await self._pool.close()
        claimed = await asyncio.gather(*self._claims.values(), return_exceptions=True)
        self._claims.clear()
        workers = [*self._workers.values(), *(w for w in claimed if isinstance(w, WorkerProcess))]
        await asyncio.gather(*(w.close() for w in workers))
        self._workers.clear()
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def _worker(self, pod_uid: str, namespace: str) -> WorkerProcess:
        """The Pod's worker: the one it has, or a spare it claims. A Pod's containers may start at
        once: they share one claim, so one worker; other Pods' claims do not wait for it."""
        worker = self._workers.get(pod_uid)
        if worker is not None and worker.alive:
            return worker
        claim = self._claims.get(pod_uid)
        if claim is None:
            claim = self._claims[pod_uid] = self._pool.take(namespace)
            claim.add_done_callback(functools.partial(self._claimed, pod_uid))
        return await asyncio.shield(claim)

    def _claimed(self, pod_uid: str, claim: asyncio.Future[WorkerProcess]) -> None:
        """The Pod's spare is ready (or failed): it is the Pod's worker now, unless it was released."""
        if self._claims.get(pod_uid) is claim:
            del self._claims[pod_uid]
            if not claim.cancelled() and claim.exception() is None:
                self._workers[pod_uid] = worker = claim.result()
                worker.pods += 1

    async def _fork(self) -> WorkerProcess:
        async with self._server_lock:
            if self._server is None or not self._server.alive:
                if self._server is not None:
                    await self._server.close()
                self._cache_dir.mkdir(parents=True, exist_ok=True)
                self._server = await ForkServer.start(self._cache_dir, self.node_cap)
            server = self._server
        return await WorkerProcess.spawn(server, self.node_cap)

    async def _reap_spinner(self, instance: WasmerInstance) -> None:
        """After a stopped module, an idle worker that still burns a core runs a loop the SDK could
        not stop: kill it (the Pod's next start gets a new worker, and a fresh /workspace)."""
        worker = instance.worker
        if worker.instances or not worker.alive:
            return
        before = worker.cpu_seconds()
        await asyncio.sleep(SPIN_SAMPLE_SECONDS)
        if not worker.instances and worker.cpu_seconds() - before > SPIN_SAMPLE_SECONDS * SPIN_CPU_SHARE:
            log.info("wasmer worker %d spins after its module was stopped; killing it", worker.pid)
            await worker.kill()

    async def _check_node_memory(self) -> None:
        """Past the node's cap, the worker using most memory is killed `OOMKilled`, as the kernel
        would pick the largest process in the node's memory cgroup."""
        while True:
            await asyncio.sleep(NODE_CHECK_SECONDS)
            charged = {worker: worker.charged_bytes() for worker in self._workers.values() if worker.alive}
            victim = node_victim(charged, self.node_cap)
            if victim is None:
                continue
            log.warning("wasmer workers use %d bytes, over the node's cap of %d; killing the largest (%d bytes)",
                        sum(charged.values()), self.node_cap, charged[victim])
            await victim.kill(ExitStatus(EXIT_KILLED, "OOMKilled", f"the node's memory cap of {self.node_cap} "
                                         "bytes for Pods was exceeded; this Pod used the most"))

    def _check_spin(self, instance: WasmerInstance) -> None:
        worker = instance.worker
        if worker not in self._spin_checks:
            task = self._spin_checks[worker] = asyncio.create_task(self._reap_spinner(instance))
            task.add_done_callback(lambda _: self._spin_checks.pop(worker, None))


def _collect_files(mounts: list[Mount], container: str) -> dict[str, bytes]:
    """Read the host files of `mounts` as {guest path: bytes}, as the container starts.

    Each mount is opened beneath its volume and walked by descriptor (`runtime.beneath`): a
    symbolic link anywhere in it is refused, never followed, even one swapped in during the walk.
    """
    files: dict[str, bytes] = {}
    budget = MAX_VOLUME_BYTES
    for mount in mounts:
        fd = open_mount(mount, container)
        try:
            for rel, data in regular_files(fd, budget):
                budget -= len(data)
                files[mount.guest_path.rstrip("/") + "/" + rel] = data
        except TooLarge:
            raise UnsupportedPod(f"volumes of this Pod exceed {MAX_VOLUME_BYTES} bytes",
                                 reason="InvalidVolume") from None
        except UnsafePath as exc:
            raise PodConfigError(f"failed to prepare volumeMount {go_quoted(mount.volume)} of container "
                                 f"{go_quoted(container)}: {exc}") from None
        finally:
            os.close(fd)
    return files


def command_name(argv0: str) -> str:
    """Wasmer names argv[0] after the package command, which allows only [A-Za-z0-9_.+-]:
    use argv[0]'s base name when it qualifies, else `main`."""
    base = argv0.rsplit("/", 1)[-1]
    return base if _COMMAND_NAME.fullmatch(base) and base not in (".", "..") else "main"


def _under_workspace(path: str) -> bool:
    return path == WORKSPACE or path.startswith(WORKSPACE + "/")


def _memory_total() -> int:
    """The node's memory (MemTotal), the cap when the agent is given no allocatable memory."""
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def _is_component(module_path: Path) -> bool:
    """The binary's header says component (an unreadable file is left to the package loader)."""
    try:
        with module_path.open("rb") as handle:
            return kind_of(handle.read(8)) == "component"
    except OSError:
        return False
