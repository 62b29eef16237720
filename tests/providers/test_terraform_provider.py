"""TerraformProvider against real terraform, with a user's own module that makes no
machine (tests/providers/modules/flaky) and fails on purpose where told to."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from nuvem.providers.provider import (
    ChangeKind,
    JoinInfo,
    NodeProvider,
    NodeRequest,
    ProviderFailed,
    ProviderProgress,
)
from nuvem.providers.terraform import TerraformFailed, TerraformProvider
from nuvem.stack.pools import PoolSpec
from servers import need_terraform

pytestmark = pytest.mark.anyio

FLAKY = Path(__file__).parent / "modules" / "flaky"
TOKEN = "5e" * 32
JOIN = JoinInfo("10.0.0.5:6379", TOKEN, token_file="/nowhere/token")


def flaky(*failing: str) -> PoolSpec:
    return PoolSpec(
        name="fl",
        module=str(FLAKY),
        max=5,
        variables={"fail": list(failing), "subnet": "10.7.0.0/16"},
    )


def requests(*indexes: int) -> dict[str, NodeRequest]:
    pool = flaky()
    return {f"fl-{i}": NodeRequest(i, 1, 2**31, 0, pool.node_labels(f"fl-{i}")) for i in indexes}


@pytest.fixture
def provider(tmp_path: Path) -> TerraformProvider:
    need_terraform()
    return TerraformProvider(tmp_path / "state")


async def test_a_failed_apply_carries_the_diagnostic_and_machines_stay_true(
    provider: TerraformProvider,
) -> None:
    seen: NodeProvider = provider  # it honours the protocol
    lines: list[ProviderProgress] = []
    with pytest.raises(TerraformFailed) as caught:
        await seen.apply(flaky("fl-2"), requests(1, 2), JOIN, lines.append)
    assert isinstance(caught.value, ProviderFailed)
    assert caught.value.status == 502
    assert "terraform apply failed: local-exec provisioner error" in caught.value.message
    assert "quota exceeded for fl-2" in caught.value.message
    [diagnostic] = caught.value.diagnostics
    assert diagnostic.address == 'module.pool.terraform_data.node["fl-2"]'
    assert any(line.message == "Error: local-exec provisioner error" for line in lines)
    # fl-1 was made; fl-2 was made too, and failed (tainted): both exist, so both are known
    machines = await provider.machines(flaky())
    assert {name: m.address for name, m in machines.items()} == {
        "fl-1": "10.7.0.1",
        "fl-2": "10.7.0.2",
    }
    changes = await provider.plan(flaky(), requests(1, 2), JOIN)
    assert [(c.kind, c.node) for c in changes] == [(ChangeKind.REPLACE, "fl-2")]

    result = await provider.apply(flaky(), requests(1, 2), JOIN)
    assert result.machines["fl-1"] == machines["fl-1"]  # untouched
    assert result.machines["fl-2"].id != machines["fl-2"].id  # made again
    assert await provider.plan(flaky(), requests(1, 2), JOIN) == []


async def test_removing_a_key_touches_no_other_node_and_destroy_ends_all(
    provider: TerraformProvider,
) -> None:
    made = (await provider.apply(flaky(), requests(1, 2, 3), JOIN)).machines
    changes = await provider.plan(flaky(), requests(1, 3, 4), JOIN)
    assert sorted((c.kind.value, c.node) for c in changes) == [
        ("create", "fl-4"),
        ("delete", "fl-2"),
    ]
    left = (await provider.apply(flaky(), requests(1, 3), JOIN)).machines
    assert left == {name: made[name] for name in ("fl-1", "fl-3")}
    await provider.destroy(flaky())
    assert await provider.machines(flaky()) == {}
    assert await TerraformProvider(provider.root.parent).machines(flaky()) == {}  # from state


async def test_runs_of_one_pool_wait_for_each_other(provider: TerraformProvider) -> None:
    first, second = await asyncio.gather(
        provider.apply(flaky(), requests(1), JOIN), provider.apply(flaky(), requests(1, 2), JOIN)
    )
    assert set(first.machines) == {"fl-1"}
    assert set(second.machines) == {"fl-1", "fl-2"}


async def test_the_work_folder_is_private_and_the_token_is_in_no_file_of_nuvem(
    provider: TerraformProvider,
) -> None:
    await provider.apply(flaky(), requests(1), JOIN)
    work = provider.work_dir(flaky())
    for folder in (provider.root, work.parent, work):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    root = json.loads((work / "main.tf.json").read_text())
    assert root["variable"]["cluster"]["sensitive"] is True
    assert root["module"]["pool"]["source"].endswith("tests/providers/modules/flaky")
    written = [p for p in work.iterdir() if p.is_file() and p.name != "terraform.tfstate"]
    # (terraform.tfstate holds what a module keeps in its resources: a VM's user data,
    # with the token. That is why the folder is 0700; docs/pools.md says so.)
    assert all(TOKEN not in p.read_text() for p in written), written


async def test_a_module_without_the_output_is_named(
    provider: TerraformProvider, tmp_path: Path
) -> None:
    module = tmp_path / "bare"
    module.mkdir()
    (module / "main.tf").write_text(
        "\n".join(f'variable "{name}" {{}}' for name in ("pool", "nodes", "cluster", "bootstrap"))
        + '\noutput "nodes" {\n  value = "none"\n}\n'
    )
    pool = PoolSpec(name="bare", module=str(module))
    with pytest.raises(ProviderFailed, match="output is not a map of nodes"):
        await provider.apply(pool, {}, JOIN)


def test_a_missing_terraform_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ProviderFailed) as caught:
        TerraformProvider(tmp_path, binary="no-such-terraform")
    assert "terraform was not found ('no-such-terraform' is not on PATH)" in caught.value.message
    assert "developer.hashicorp.com/terraform/install" in caught.value.hint
