"""Everything one running nuvem holds, wired together: records, runtime, controller, auth."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nuvem.cluster.engine import Engine, LocalEngine, RayEngine
from nuvem.cluster.membership import NodeState
from nuvem.config import Settings
from nuvem.control.controller import Controller, Environments
from nuvem.control.deployment import Deployment
from nuvem.control.node_tier import NodeTier
from nuvem.control.pool_book import BOOK_FILE, PoolBook
from nuvem.gateway.auth import Authenticator, ensure_admin
from nuvem.gateway.rate_limit import open_rate_limiter
from nuvem.jobs.service import JobService
from nuvem.metrics.node_gauges import NodeSeen
from nuvem.metrics.registry import Metrics
from nuvem.providers.provider import NodeProvider
from nuvem.runtime.by_kind import NO_CONTAINERS, ByKind
from nuvem.runtime.container_engine import EngineError
from nuvem.runtime.container_runtime import OWNER_LABEL, ContainerRuntime
from nuvem.runtime.engine_choice import choose_engine, engine_setting, no_engine
from nuvem.runtime.environment import EnvironmentBuilder, ProgressEvent
from nuvem.runtime.image_builder import ImageBuilder
from nuvem.runtime.local import LocalRuntime
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.registry_access import RegistryAccess, registry_access
from nuvem.runtime.replica import Runtime
from nuvem.runtime.warm_pool import WarmPool
from nuvem.stack.function import FunctionSpec
from nuvem.stack.metrics import influx_target
from nuvem.stack.stack import Stack
from nuvem.stack.store_urls import apply_stores
from nuvem.stores.record_stores import open_record_store
from nuvem.stores.records import RecordStore

if TYPE_CHECKING:
    from nuvem.metrics.influx_exporter import InfluxExporter

log = logging.getLogger(__name__)


@dataclass
class Platform:
    settings: Settings
    records: RecordStore
    controller: Controller
    auth: Authenticator
    logbook: LogBook
    metrics: Metrics
    jobs: JobService
    engine: Engine = field(default_factory=LocalEngine)
    admin_password_file: Path | None = None
    stack: Stack | None = None
    exporter: InfluxExporter | None = None  # pushes the metrics to InfluxDB when configured
    on_shutdown_request: Callable[[], None] | None = field(default=None, repr=False)
    containers: ContainerRuntime | None = None  # this machine's, when image functions run here
    registry: RegistryAccess | None = None  # the stack's: built images are named and pushed so

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        stack: Stack | None = None,
        records: RecordStore | None = None,
        runtime: Runtime | None = None,
        environments: Environments | None = None,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        tick_interval: float | None = None,  # default: settings.tick_interval
        provider: NodeProvider | None = None,  # what makes pool machines; default terraform
        warm_pool: WarmPool | None = None,  # pre-started workers (`nuvem up` starts them early)
    ) -> Platform:
        settings = apply_stores(settings, stack.stores if stack is not None else None)
        state = settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        records = records or open_record_store(settings)
        logbook = LogBook(directory=state / "logs")
        metrics = Metrics()
        deployments: dict[str, Deployment] = {}

        def progress(event: ProgressEvent) -> None:
            # Shown by `nuvem deploy` and /system/function while an environment builds.
            deployment = deployments.get(event.function)
            if deployment is not None:
                deployment.report_progress(f"{event.what} {event.phase}: {event.message}")
            if on_progress is not None:
                on_progress(event)

        engine: Engine = LocalEngine()
        access = registry_access(stack.registry if stack is not None else None, settings)
        prepare: Callable[[FunctionSpec], Awaitable[None]] | None = None
        if stack is not None and stack.cluster.engine == "ray":
            from nuvem.cluster.ray_containers import RayContainers
            from nuvem.cluster.ray_runtime import NodeEnvironments, RayRuntime

            ray_engine = RayEngine(state, stack.cluster)
            engine = ray_engine
            if runtime is None:
                ray_runtime = RayRuntime(logbook, connect=ray_engine.connect)
                ray_containers = RayContainers(
                    ray_runtime,
                    images=_gateway_builds(settings, stack, access, progress),
                    registry=access,
                )
                runtime = ByKind(ray_runtime, ray_containers)
                prepare = ray_containers.prepare
            environments = environments or NodeEnvironments()
        containers, missing = (
            _containers(settings, stack, logbook, progress, state, access)
            if runtime is None
            else (None, NO_CONTAINERS)
        )
        controller = Controller(
            records=records,
            runtime=runtime
            or ByKind(
                LocalRuntime(
                    logbook,
                    model_cache=state / "models",
                    warm_workers=settings.warm_workers,
                    pool=warm_pool,
                ),
                containers,
                missing,
            ),
            environments=environments or EnvironmentBuilder(state, on_progress=progress),
            logbook=logbook,
            metrics=metrics,
            tick_interval=tick_interval or settings.tick_interval,
            leaving=engine.leaving if engine.name != "local" else None,
            prepare=containers.prepare if containers is not None else prepare,
        )
        deployments = controller.deployments
        if stack is not None and stack.pools and isinstance(engine, RayEngine):
            controller.node_tier = _node_tier(state, stack, engine, controller, provider)
        metrics.watch_nodes(functools.partial(_nodes_seen, engine))
        password_file = ensure_admin(records, state, settings.admin_password)
        influx = influx_target(settings, stack.metrics if stack is not None else None)
        exporter: InfluxExporter | None = None
        if influx is not None:  # its HTTP client loads only where metrics are pushed
            from nuvem.metrics.influx_exporter import InfluxExporter
            from nuvem.metrics.influx_sink import HttpSink

            exporter = InfluxExporter(influx, metrics.registry, HttpSink.open(influx))
        return cls(
            settings=settings,
            records=records,
            controller=controller,
            auth=Authenticator(
                records,
                limiter=open_rate_limiter(settings),
                default_rate=settings.rate_limit,
                default_burst=settings.rate_burst,
            ),
            logbook=logbook,
            metrics=metrics,
            admin_password_file=password_file,
            stack=stack,
            engine=engine,
            exporter=exporter,
            containers=containers,
            registry=access,
            jobs=JobService.create(settings, lambda: controller.deployments, metrics),
        )

    async def start(self) -> None:
        """Bring back what was deployed, then deploy the stack file's functions over it."""
        await self._sweep_containers()
        await self.controller.start()
        if self.stack is not None:
            for spec in self.stack.functions.values():
                self.controller.deploy(spec)
        await self.jobs.start()
        if self.exporter is not None:
            self.exporter.start()

    async def _sweep_containers(self) -> None:
        """Remove the containers a gateway of this state folder left when it was killed;
        an event per function says which. An engine that fails here does not stop the
        start: the containers stay, and the event says so."""
        if self.containers is None:
            return
        try:
            removed = await self.containers.sweep()
        except (EngineError, OSError) as error:
            self.controller.event(
                "orphans_left",
                None,
                f"could not look for containers a previous gateway left running: {error}; "
                f"remove them by hand (`podman ps -a --filter label={OWNER_LABEL}`)",
            )
            return
        by_function: dict[str | None, list[str]] = {}
        for container in removed:
            by_function.setdefault(container.labels.get("nuvem.function"), []).append(
                container.name
            )
        for function, names in sorted(by_function.items(), key=lambda item: item[0] or ""):
            self.controller.event(
                "orphans_removed",
                function,
                f"removed {len(names)} container(s) a previous gateway of this state folder "
                f"left running when it was killed: {', '.join(sorted(names))}",
                {"containers": sorted(names)},
            )

    async def stop(self) -> None:
        await self.jobs.stop()  # jobs still running go back to the queue
        await self.controller.stop()
        if self.exporter is not None:
            await self.exporter.stop()  # after the controller: its last round sees the end
        self.logbook.close()
        self.logbook.close_files()
        self.records.close()

    def abort(self, reason: str) -> None:
        """Stop serving at once: every call waiting or running fails with 503 and `reason`,
        every replica is killed (no worker outlives the gateway); `stop()` follows."""
        self.controller.abort(reason)

    def request_shutdown(self) -> None:
        if self.on_shutdown_request is None:
            log.warning("shutdown requested, but this platform was not started by `nuvem up`")
            return
        self.on_shutdown_request()


def _containers(
    settings: Settings,
    stack: Stack | None,
    logbook: LogBook,
    progress: Callable[[ProgressEvent], None],
    state: Path,
    access: RegistryAccess | None,
) -> tuple[ContainerRuntime | None, tuple[str, str]]:
    """The container runtime of this machine's engine (the images of `build:` functions
    built there, their progress shown as an environment build's is), or None and why not."""
    choice = engine_setting(settings.container_engine, stack.container_engine if stack else None)
    engine = choose_engine(choice, settings.docker_host)
    if engine is None:
        return None, no_engine(settings.docker_host)
    images = ImageBuilder(engine, on_progress=progress, registry=access)
    # The state folder names the owner: a gateway started again on it is its successor.
    owner = str(state.resolve())
    runtime = ContainerRuntime(engine, logbook, images=images, owner=owner, registry=access)
    return runtime, NO_CONTAINERS


def _gateway_builds(
    settings: Settings,
    stack: Stack,
    access: RegistryAccess | None,
    progress: Callable[[ProgressEvent], None],
) -> ImageBuilder | None:
    """On a cluster, where `build:` images are made: this machine's engine, pushing to the
    stack's registry for the nodes to pull; None without a registry or an engine (such a
    function then fails to start, naming what is missing)."""
    if access is None:
        return None
    choice = engine_setting(settings.container_engine, stack.container_engine)
    engine = choose_engine(choice, settings.docker_host)
    if engine is None:
        return None
    return ImageBuilder(engine, on_progress=progress, registry=access)


def _nodes_seen(engine: Engine) -> list[NodeSeen]:
    return [
        NodeSeen(node.state.value, node.state is NodeState.DEAD and not node.drained)
        for node in engine.nodes()
    ]


def _node_tier(
    state: Path,
    stack: Stack,
    engine: RayEngine,
    controller: Controller,
    provider: NodeProvider | None,
) -> NodeTier:
    """The second tier, for a stack with pools: machines through Terraform by default."""
    if provider is None:
        from nuvem.providers.terraform import TerraformProvider

        provider = TerraformProvider(state)
    return NodeTier(
        stack.pools, provider, engine, PoolBook(state / BOOK_FILE), controller.pool_event
    )
