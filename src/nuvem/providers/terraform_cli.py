"""The terraform binary: found once, run as an asyncio subprocess, its output streamed.

Every run gets the same quiet, non-interactive environment: no update check, no prompts,
nuvem's own CLI configuration (a provider cache shared by the pools), and no TF_VAR_* of
the caller's, so a pool's variables are exactly the ones nuvem passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nuvem.providers.provider import ProviderFailed

INSTALL_HINT = (
    "install Terraform 1.5 or newer (https://developer.hashicorp.com/terraform/install: "
    "HashiCorp's apt/yum repository, brew install hashicorp/tap/terraform, or the zip "
    "from releases.hashicorp.com) and put it on PATH, or give its path"
)
INTERRUPT_GRACE = 30.0  # seconds Terraform gets to stop cleanly and save its state
_LINE_LIMIT = 2**24  # a plan's JSON line can be large


@dataclass(frozen=True, slots=True)
class Run:
    """One finished terraform command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str  # what was not streamed line by line (all of it when nothing was)
    stderr: str


def find_terraform(binary: str | None = None) -> str:
    """The terraform executable: `binary` (a path or a name on PATH), else `terraform`."""
    name = binary or "terraform"
    found = shutil.which(name)
    if found is None:
        raise ProviderFailed(f"terraform was not found ({name!r} is not on PATH)", INSTALL_HINT)
    return found


def cli_config(path: Path, plugin_cache: Path) -> None:
    """nuvem's own CLI configuration: no update checks, one provider cache for all pools
    (a missing or foreign ~/.terraformrc would otherwise apply)."""
    plugin_cache.mkdir(parents=True, exist_ok=True)
    text = f"disable_checkpoint = true\nplugin_cache_dir = {_quoted(plugin_cache)}\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


class TerraformCli:
    def __init__(self, binary: str, config_file: Path, base: Mapping[str, str] | None = None):
        self.binary = binary
        self.config_file = config_file
        self._base = dict(os.environ if base is None else base)

    def environment(self, variables: Mapping[str, str]) -> dict[str, str]:
        environ = {k: v for k, v in self._base.items() if not k.startswith("TF_VAR_")}
        environ.update(
            CHECKPOINT_DISABLE="1",
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            TF_CLI_CONFIG_FILE=str(self.config_file),
        )
        environ.update(variables)
        return environ

    async def run(
        self,
        args: Sequence[str],
        cwd: Path,
        variables: Mapping[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> Run:
        """Run `terraform ARGS` in `cwd`; each stdout line goes to `on_line` as it comes.
        Cancelled, it interrupts Terraform (which stops cleanly and saves its state)."""
        process = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            cwd=cwd,
            env=self.environment(variables or {}),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
            start_new_session=True,  # a Ctrl-C to nuvem is nuvem's to pass on
        )
        assert process.stdout is not None
        assert process.stderr is not None
        kept: list[str] = []
        stderr_task = asyncio.ensure_future(process.stderr.read())
        try:
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                if on_line is None:
                    kept.append(line)
                else:
                    on_line(line)
            stderr = (await stderr_task).decode(errors="replace")
            returncode = await process.wait()
        except BaseException:
            await _interrupt(process)
            stderr_task.cancel()
            raise
        return Run(tuple(args), returncode, "\n".join(kept), stderr)


async def _interrupt(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.shield(asyncio.wait_for(process.wait(), INTERRUPT_GRACE))
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            process.kill()


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'
