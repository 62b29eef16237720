"""`TerraformProvider`: a pool's machines made by the terraform CLI driving its module.

Each pool has a work folder, STATE/pools/POOL/terraform, with the root module nuvem writes
(main.tf.json, see terraform_root.py) and Terraform's state. The folder is 0700: the
state holds every variable's value, the cluster token among them. Runs of one pool are
serialized here (an asyncio lock) and by Terraform's own state lock.

A failed apply may have made some machines and not others, and Terraform leaves the
module's outputs as they were before it. So after a failure nuvem refreshes the outputs
from the state (`apply -refresh-only`) before it reads them: it never believes in a
machine that does not exist, nor forgets one that does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nuvem.providers import terraform_messages as messages
from nuvem.providers.provider import (
    ApplyResult,
    JoinInfo,
    MachineInfo,
    NodeRequest,
    PlannedChange,
    ProgressSink,
    ProviderFailed,
)
from nuvem.providers.terraform_cli import Run, TerraformCli, cli_config, find_terraform
from nuvem.providers.terraform_root import (
    Bootstrap,
    default_package,
    environment,
    module_path,
    root_module,
    variables,
)
from nuvem.stack.pools import PoolSpec

LOCK_TIMEOUT = 60.0  # seconds to wait for Terraform's state lock (another run of the pool)
ROOT_FILE = "main.tf.json"
STATE_FILE = "terraform.tfstate"
_INITIALIZED = ".nuvem-init"  # the digest of what `terraform init` last ran for
_TAIL = 20  # lines of Terraform's own output in an error without diagnostics


class TerraformFailed(ProviderFailed):
    """A terraform run failed; `diagnostics` are Terraform's own errors."""

    def __init__(
        self, message: str, hint: str = "", diagnostics: Sequence[messages.Diagnostic] = ()
    ) -> None:
        super().__init__(message, hint)
        self.diagnostics = list(diagnostics)


class TerraformProvider:
    """The NodeProvider that runs `terraform` (1.5 or newer) for each pool."""

    def __init__(
        self,
        state_dir: Path,
        binary: str | None = None,
        *,
        nuvem_package: str | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self.binary = find_terraform(binary)
        self.root = state_dir / "pools"
        self.bootstrap = Bootstrap(nuvem_package or default_package(), sys.executable)
        self.lock_timeout = lock_timeout
        self._cli = TerraformCli(self.binary, self.root / "terraform.rc")
        self._locks: dict[str, asyncio.Lock] = {}
        self._machines: dict[str, dict[str, MachineInfo]] = {}
        self._joins: dict[str, JoinInfo] = {}  # the last of each pool, for destroy

    def work_dir(self, pool: PoolSpec) -> Path:
        return self.root / pool.name / "terraform"

    def machines_dir(self, pool: PoolSpec) -> Path:
        """Where the `local` module's nodes keep their state folders."""
        return self.root / pool.name / "machines"

    async def apply(
        self,
        pool: PoolSpec,
        nodes: Mapping[str, NodeRequest],
        join: JoinInfo,
        progress: ProgressSink | None = None,
    ) -> ApplyResult:
        async with self._lock(pool.name):
            self._joins[pool.name] = join
            values = await self._prepare(pool, nodes, join)
            run, found = await self._run_json(pool, ["apply", "-auto-approve"], values, progress)
            if run.returncode != 0:
                await self._refresh_outputs(pool, values)
                raise self._failed(pool, "apply", run, found)
            return ApplyResult(machines=await self._read_machines(pool))

    async def plan(
        self, pool: PoolSpec, nodes: Mapping[str, NodeRequest], join: JoinInfo
    ) -> list[PlannedChange]:
        async with self._lock(pool.name):
            values = await self._prepare(pool, nodes, join)
            run, found = await self._run_json(pool, ["plan", "-detailed-exitcode"], values)
            if run.returncode not in (0, 2):  # 0: no changes, 2: changes
                raise self._failed(pool, "plan", run, found)
            return [change for change in found if isinstance(change, PlannedChange)]

    async def machines(self, pool: PoolSpec) -> dict[str, MachineInfo]:
        if pool.name not in self._machines:
            # No lock: reading outputs takes none, and an apply in flight may be long.
            self._machines[pool.name] = await self._outputs(pool)
        return dict(self._machines[pool.name])

    async def destroy(self, pool: PoolSpec, progress: ProgressSink | None = None) -> None:
        async with self._lock(pool.name):
            if not (self.work_dir(pool) / STATE_FILE).exists():
                self._machines[pool.name] = {}
                return
            # The module is evaluated even to destroy: give it the last head it knew.
            join = self._joins.get(pool.name, JoinInfo(address="", token=""))
            values = await self._prepare(pool, {}, join)
            run, found = await self._run_json(pool, ["destroy", "-auto-approve"], values, progress)
            machines = await self._read_machines(pool)
            if run.returncode != 0:
                raise self._failed(pool, "destroy", run, found)
            if machines:
                raise TerraformFailed(
                    f"pool {pool.name}: terraform destroy left {', '.join(sorted(machines))}",
                    hint=f"see the state in {self.work_dir(pool)}",
                )

    async def _prepare(
        self, pool: PoolSpec, nodes: Mapping[str, NodeRequest], join: JoinInfo
    ) -> dict[str, Any]:
        """Write the pool's root module and run `terraform init` when it needs one; the
        variables to run it with."""
        work = self.work_dir(pool)
        for folder in (self.root, self.root / pool.name, work, self.machines_dir(pool)):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)  # mkdir's mode is reduced by the umask, and not applied
        cli_config(self._cli.config_file, self.root / "plugin-cache")
        module = module_path(pool)
        if not module.is_dir():
            raise ProviderFailed(
                f"pool {pool.name}: module {str(module)!r} is not a folder",
                hint="give the absolute path of a Terraform module, or local, proxmox or aws",
            )
        values = variables(pool, nodes, join, self.bootstrap, self.machines_dir(pool))
        text = json.dumps(root_module(module, work, values), indent=2, sort_keys=True) + "\n"
        root_file = work / ROOT_FILE
        if not root_file.exists() or root_file.read_text() != text:
            root_file.write_text(text)
        digest = _digest(text, module)
        marker = work / _INITIALIZED
        fresh = marker.exists() and marker.read_text() == digest
        if not fresh or not (work / ".terraform").is_dir():
            run = await self._cli.run(["init", "-input=false", "-no-color"], work)
            if run.returncode != 0:
                raise ProviderFailed(
                    f"pool {pool.name}: terraform init failed:\n{_tail(run)}",
                    hint=f"the root module is {root_file}; its module {module}",
                )
            marker.write_text(digest)
        return values

    async def _run_json(
        self,
        pool: PoolSpec,
        command: list[str],
        values: Mapping[str, Any],
        progress: ProgressSink | None = None,
    ) -> tuple[Run, list[messages.Diagnostic | PlannedChange]]:
        """Run a -json command, streaming its progress; its diagnostics and changes."""
        found: list[messages.Diagnostic | PlannedChange] = []
        plain: list[str] = []  # what Terraform printed outside its messages (a crash)

        def on_line(line: str) -> None:
            message = messages.parse_line(line)
            if message is None:
                plain.append(line)
                return
            item = messages.diagnostic(message) or messages.planned_change(message)
            if item is not None:
                found.append(item)
            line_of_progress = messages.progress(pool.name, message)
            if progress is not None and line_of_progress is not None:
                progress(line_of_progress)

        args = [*command, "-json", "-input=false", f"-lock-timeout={self.lock_timeout:g}s"]
        run = await self._cli.run(args, self.work_dir(pool), environment(values), on_line)
        return dataclasses.replace(run, stdout="\n".join(plain)), found

    async def _refresh_outputs(self, pool: PoolSpec, values: Mapping[str, Any]) -> None:
        """Bring the outputs up to date with what the state holds now (after a failure
        they still describe the state before the run). Best effort: if even this fails,
        nothing changed since the outputs were last written."""
        with contextlib.suppress(ProviderFailed):
            await self._run_json(pool, ["apply", "-refresh-only", "-auto-approve"], values)
        with contextlib.suppress(ProviderFailed):
            await self._read_machines(pool)

    async def _read_machines(self, pool: PoolSpec) -> dict[str, MachineInfo]:
        self._machines[pool.name] = await self._outputs(pool)
        return dict(self._machines[pool.name])

    async def _outputs(self, pool: PoolSpec) -> dict[str, MachineInfo]:
        work = self.work_dir(pool)
        if not (work / STATE_FILE).exists():
            return {}
        run = await self._cli.run(["output", "-json", "-no-color"], work)
        if run.returncode != 0:
            raise ProviderFailed(f"pool {pool.name}: terraform output failed:\n{_tail(run)}")
        try:
            return messages.machines(json.loads(run.stdout or "{}"))
        except ValueError as exc:
            raise ProviderFailed(
                f"pool {pool.name}: {exc}",
                hint=f"module {module_path(pool)} must output nodes = "
                "map(object({address = string, id = string})), one entry per key of var.nodes",
            ) from None

    def _failed(
        self, pool: PoolSpec, what: str, run: Run, found: Sequence[object]
    ) -> TerraformFailed:
        errors = messages.errors(item for item in found if isinstance(item, messages.Diagnostic))
        said = "; ".join(str(error) for error in errors) or _tail(run)
        return TerraformFailed(
            f"pool {pool.name}: terraform {what} failed: {said}",
            hint=f"Terraform's state and the root module are in {self.work_dir(pool)}",
            diagnostics=errors,
        )

    def _lock(self, pool: str) -> asyncio.Lock:
        return self._locks.setdefault(pool, asyncio.Lock())


def _digest(root: str, module: Path) -> str:
    """What `terraform init` depends on: the root module and the module's own files
    (their required providers and nested module sources)."""
    digest = hashlib.sha256(root.encode())
    for path in sorted(module.rglob("*.tf")):
        if ".terraform" not in path.parts:
            digest.update(str(path.relative_to(module)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _tail(run: Run) -> str:
    lines = [line for line in (run.stderr + "\n" + run.stdout).splitlines() if line.strip()]
    return "\n".join(lines[-_TAIL:]) or f"exit status {run.returncode}"
