"""The composition root: builds every part of the agent once and runs them under one TaskGroup.

Modes: with an API server (the Node, Lease, Pods bound to this node, status and Events posted
back) or standalone (no API at all: static Pods from a manifest folder). Shutdown is graceful:
Pods are stopped within their grace periods and the Node is marked not ready before exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

from wasmlet.kube import ApiError, KubeClient, load_config
from wasmlet.kube.config import ConfigError
from wasmlet.nodeagent import VERSION
from wasmlet.nodeagent.cacheguard import CacheGuard
from wasmlet.nodeagent.claims import ApiClaims, ClaimSource, NoClaims
from wasmlet.nodeagent.config import AgentSettings
from wasmlet.nodeagent.link import CloudLink
from wasmlet.nodeagent.metrics import AgentMetrics
from wasmlet.nodeagent.mirror import MirrorReporter
from wasmlet.nodeagent.modules import ModuleCache
from wasmlet.nodeagent.node import node_labels
from wasmlet.nodeagent.objects import ApiObjects, LayeredObjects, ObjectStore, StaticObjects, WatchedObjects
from wasmlet.nodeagent.pods import AgentEnv, PodController, Reporter
from wasmlet.nodeagent.podstore import PodStore, StoringReporter
from wasmlet.nodeagent.ports import NodePorts
from wasmlet.nodeagent.runtime import Runtime, load_backend

log = logging.getLogger(__name__)

# How often what the store lost is reported as Node Events (and retried while the API is away).
STORE_REPORT_SECONDS = 1.0


class Runtimes:
    """Loads each runtime backend the first time a Pod asks for it (the footprint: docs/architecture.md)."""

    def __init__(self, offered: tuple[str, ...], cache_dir: Path, allocatable_memory: int = 0) -> None:
        self.offered = offered
        self._cache_dir = cache_dir
        self._allocatable_memory = allocatable_memory
        self._loaded: dict[str, Runtime] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> Runtime:
        runtime = self._loaded.get(name)
        if runtime is None:
            async with self._lock:
                runtime = self._loaded.get(name)
                if runtime is None:
                    runtime = await asyncio.to_thread(load_backend, name, self._cache_dir,
                                                    self._allocatable_memory)
                    self._loaded[name] = runtime
        return runtime

    async def close(self) -> None:
        for runtime in self._loaded.values():
            await runtime.close()
        self._loaded.clear()


async def _check_credentials(api: KubeClient) -> None:
    """Fetch the credentials once at start, so a broken exec plugin is reported at once, plainly.

    The agent runs on (its Pods keep running, edge autonomy) and fetches them again on every
    request until they work; the error repeats in the API errors meanwhile.
    """
    try:
        await api.credentials.login()
    except ConfigError as exc:
        log.error("cannot get credentials for the API server %s: %s", api.config.server, exc)


class Agent:
    """One node agent. `run()` until `stop` is set."""

    def __init__(self, settings: AgentSettings, reporter: Reporter | None = None) -> None:
        self.settings = settings
        self._reporter = reporter
        self.controller: PodController | None = None
        self.static: Any = None
        self.node: Any = None
        self.mirrors: MirrorReporter | None = None
        self.metrics = AgentMetrics()
        self.kubelet_port: int | None = None
        self.credentials: Any = None  # NodeCredentials under TLS bootstrap
        self.link = CloudLink()
        self.started = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        state = settings.state_dir
        # It holds Secret volumes, the store and the kubelet API's key: owner only, even if it
        # existed with a wider mode (a hostPath directory made by someone else).
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        state.chmod(0o700)
        for sub in ("modules", "pods", "logs", "runtimes"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        runtimes = Runtimes(settings.runtimes, state / "runtimes", settings.allocatable_memory)
        async with contextlib.AsyncExitStack() as stack:
            api: KubeClient | None = None
            if not settings.standalone:
                kubeconfig, context = settings.kubeconfig, settings.context
                if settings.bootstrap_kubeconfig is not None:
                    from wasmlet.nodeagent.bootstrap import NodeCredentials

                    self.credentials = NodeCredentials(settings)
                    kubeconfig, context = str(await self.credentials.ensure()), None  # the node kubeconfig's own
                api = await stack.enter_async_context(KubeClient(load_config(kubeconfig, context),
                                                                 user_agent=f"wasmlet-agent/{settings.node_name}",
                                                                 on_request=self._count_request))
                await _check_credentials(api)
            store = PodStore(state / "agent.db")
            stack.callback(store.close)
            static_objects = StaticObjects()
            objects: ObjectStore = static_objects
            self.link = CloudLink()  # writes tell whether the API is reachable (node, reporter)
            base = self._reporter or self._api_reporter(api)
            if api is not None and settings.metaserver:
                objects = ApiObjects(api, store)
            elif api is not None:
                # Object watches hold a connection each: their own client, without the connection limit.
                watch_api = await stack.enter_async_context(KubeClient(
                    api.config, user_agent=f"wasmlet-agent/{settings.node_name}", max_connections=0,
                    credentials=api.credentials, on_request=self._count_request))
                watched = objects = WatchedObjects(watch_api, store)
                stack.push_async_callback(watched.close)
            if api is not None and settings.manifests is not None:  # mixed mode: static Pods next to the API's
                objects = LayeredObjects(static_objects, objects)
                base = self.mirrors = MirrorReporter(base, api, settings.node_name)
            reporter = StoringReporter(base, store)
            claims: ClaimSource = ApiClaims(api) if api is not None else NoClaims()
            env = AgentEnv(
                node_name=settings.node_name, node_ip=settings.node_ip, runtimes=settings.runtimes,
                runtime=runtimes.get,
                modules=ModuleCache(state / "modules", objects, settings.module_max_bytes,
                                    settings.allow_unpinned_urls, cache_max_bytes=settings.module_cache_max_bytes,
                                    insecure_registries=settings.insecure_registries),
                objects=objects, reporter=reporter, pods_dir=state / "pods", logs_dir=state / "logs",
                claims=claims, node_labels=node_labels(settings),
                log_max_bytes=settings.log_max_bytes, log_max_files=settings.log_max_files,
                max_pods=settings.max_pods, eviction_seconds=settings.eviction_monitoring_seconds,
                backoff_base=settings.restart_backoff_seconds, metrics=self.metrics, server_software=f"wasmlet/{VERSION}",
                ports=NodePorts(settings.min_host_port),
                modules_by_reference=settings.metaserver,
            )
            self.controller = PodController(env, store=store)
            if settings.serve_kubelet_api:
                runner = await self._serve_kubelet_api(state / "logs", state / "pki", api)
                stack.push_async_callback(runner.cleanup)
            try:
                await self._serve(api, env, reporter, store, stop)
            finally:
                await self.controller.stop_all(self.settings.shutdown_grace_seconds)
                await env.close()
                if self.node is not None:
                    await self._mark_not_ready()
                await runtimes.close()

    async def _serve(self, api: KubeClient | None, env: AgentEnv, reporter: StoringReporter, store: PodStore,
                     stop: asyncio.Event) -> None:
        from wasmlet.nodeagent.sources import ApiPods, StaticPods

        assert self.controller is not None
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(reporter.run())]
            if api is not None:
                from wasmlet.nodeagent.node import NodeController

                # Edge autonomy: what the store says should run starts now, API or not; the API's
                # list replaces it as soon as the API answers.
                await self.controller.replace(store.pods("api"))
                self.node = NodeController(api, self.settings, self.link)
                guard = CacheGuard(api, store, self.controller, self.node.link) if self.settings.metaserver else None
                tasks.append(group.create_task(self.node.run()))
                tasks.append(group.create_task(reporter.inner.run()))
                pods = ApiPods(api, self.settings.node_name, self.controller, store, reporter, guard)
                tasks.append(group.create_task(pods.run()))
                if self.credentials is not None:
                    tasks.append(group.create_task(self.credentials.rotate()))
                tasks.append(group.create_task(self._report_store_problems(api, store)))
            if self.settings.manifests is not None:
                statics = env.objects.static if isinstance(env.objects, LayeredObjects) else env.objects
                assert isinstance(statics, StaticObjects)
                on_scan = self.mirrors.sync if self.mirrors is not None else None
                self.static = StaticPods(self.settings.manifests, self.settings.node_name, self.controller,
                                         statics, on_scan=on_scan)
                tasks.append(group.create_task(self.static.run()))
            self.started.set()
            await stop.wait()
            log.info("stopping: %d pod(s) get their grace periods (at most %gs)", len(self.controller.workers()),
                     self.settings.shutdown_grace_seconds)
            await self.controller.stop_all(self.settings.shutdown_grace_seconds)
            log.info("every pod stopped")
            if api is not None:
                await reporter.inner.drain()
            for task in tasks:
                task.cancel()

    async def _serve_kubelet_api(self, logs_dir: Path, pki_dir: Path, api: KubeClient | None) -> Any:
        from wasmlet.nodeagent.kubeletapi import KubeletApi, serve
        from wasmlet.nodeagent.kubeletauth import TokenReviewer, auth_middleware, client_ca_for
        from wasmlet.nodeagent.kubeletauthz import AccessReviewer
        from wasmlet.nodeagent.tls import server_context

        assert self.controller is not None
        s = self.settings
        client_ca = client_ca_for(s.client_ca_file, api)
        context = await asyncio.to_thread(server_context, s.tls_cert_file, s.tls_key_file, pki_dir, s.node_name,
                                          s.node_ip, client_ca)
        middlewares: tuple[Any, ...] = ()
        if s.kubelet_api_auth == "webhook":
            if api is None and client_ca is None:
                log.warning("kubelet API: no API server to review tokens and no client_ca_file: only /healthz "
                            "answers; set kubelet_api_auth: none to serve logs without authentication")
            middlewares = (auth_middleware(TokenReviewer(api) if api else None,
                                           AccessReviewer(api, s.node_name)
                                           if api and s.kubelet_api_authorization == "webhook" else None),)
        kubelet_api = KubeletApi(self.controller, self.metrics, logs_dir, middlewares=middlewares)
        runner = await serve(kubelet_api, s.kubelet_address, s.kubelet_port, context)
        self.kubelet_port = runner.addresses[0][1]
        self.controller.env.ports.reserve(self.kubelet_port, "kubelet API: logs, /pods, /metrics")
        # Port 0 picks a free port; the Node must advertise the real one.
        self.settings = dataclasses.replace(s, kubelet_port=self.kubelet_port)
        trusted = (s.client_ca_file if s.client_ca_file is not None
                   else f"the cluster CA of {api.config.source}" if api is not None and client_ca is not None
                   else "no CA (tokens only)")
        log.info("kubelet API on https://%s:%d; client certificates signed by %s", s.kubelet_address,
                 self.kubelet_port, trusted)
        return runner

    async def _report_store_problems(self, api: KubeClient, store: PodStore) -> None:
        """What the store lost (moved aside, bad rows) as Warning Events on the Node, once each."""
        from wasmlet.nodeagent.reporting import post_node_event

        pending: list[str] = []
        while True:
            pending += store.take_problems()
            while pending:
                try:
                    await post_node_event(api, self.settings.node_name, "Warning", "StoreRecovered", pending[0])
                except ApiError as exc:
                    log.debug("store problem not reported yet: %s", exc)
                    break
                pending.pop(0)
            await asyncio.sleep(STORE_REPORT_SECONDS)

    def _api_reporter(self, api: KubeClient | None) -> Reporter:
        from wasmlet.nodeagent.reporting import ApiReporter, ConsoleReporter

        return (ApiReporter(api, self.settings.node_name, metrics=self.metrics, link=self.link) if api
                else ConsoleReporter())

    def _count_request(self, verb: str, resource: str, code: str) -> None:
        self.metrics.api_requests.labels(verb, resource, code).inc()

    async def _mark_not_ready(self) -> None:
        assert self.node is not None
        self.node.set_ready(False, "KubeletNotReady", "wasmlet is shutting down")
        try:
            await asyncio.wait_for(self.node.post_status(), timeout=5)
        except (TimeoutError, ApiError) as exc:
            log.warning("could not mark the node not ready: %s", exc)
