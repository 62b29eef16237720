"""`Services`: what the gateway serves from. `nuvem.platform.Platform` wires the real ones;
the gateway sees only this interface, so it depends on no wiring above it."""

from __future__ import annotations

from typing import Protocol

from nuvem.cluster.engine import Engine
from nuvem.config import Settings
from nuvem.control.controller import Controller
from nuvem.gateway.auth import Authenticator
from nuvem.jobs.service import JobService
from nuvem.metrics.registry import Metrics
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.registry_access import RegistryAccess
from nuvem.stores.records import RecordStore


class Services(Protocol):
    settings: Settings
    records: RecordStore
    controller: Controller
    auth: Authenticator
    logbook: LogBook
    metrics: Metrics
    jobs: JobService
    engine: Engine
    registry: RegistryAccess | None  # the stack's: where built images are pushed

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def request_shutdown(self) -> None: ...
