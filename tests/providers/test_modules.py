"""Every pool module honours the contract (docs/pools.md), checked offline.

The proxmox and aws modules cannot be applied here (their providers cannot be
downloaded), so they are checked by what can be: `terraform fmt -check`, and their HCL
parsed (python-hcl2) against the contract. The cloud-init template is rendered for real
by terraform's templatefile and read as YAML; the playbook passes ansible's syntax check.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from nuvem.providers.terraform_root import (
    BOOTSTRAP_TYPE,
    CLOUD_INIT,
    CLUSTER_TYPE,
    MODULES,
    NODES_TYPE,
    PLAYBOOK,
)
from nuvem.stack.pools import BUILT_IN_MODULES
from servers import need_ansible, need_terraform

USER_MODULES = sorted((Path(__file__).parent / "modules").iterdir())
EVERY_MODULE = [MODULES / name for name in BUILT_IN_MODULES] + USER_MODULES
VM_MODULES = ("proxmox", "aws")
PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
# What a VM module passes to templatefile(var.bootstrap.cloud_init, ...): rendering below
# fails if the template uses anything else.
TEMPLATE_VARS: dict[str, Any] = {
    "node": "cpu-1",
    "pool": "cpu",
    "head": "10.0.0.5:6379",
    "token": 'it\'s a "secret" with ${braces} and %{ percent }\n',
    "nuvem_package": "nuvem[ray,pools]==0.1.0",
    "cpus": 2,
    "memory_mb": 4096,
    "gpus": 1,
    "labels": {"nuvem.dev/pool": "cpu", "nuvem.dev/node": "cpu-1", "zone": "a"},
    "object_store_memory": "256Mi",
}


def load(module: Path) -> dict[str, list[Any]]:
    """Every block of the module's .tf files, by kind (python-hcl2 keeps names quoted)."""
    blocks: dict[str, list[Any]] = {}
    for path in sorted(module.glob("*.tf")):
        with path.open() as file:
            for kind, items in hcl2.load(file).items():
                blocks.setdefault(kind, []).extend(items)
    return blocks


def named(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        name.strip('"'): body
        for item in items
        for name, body in item.items()
        if not name.startswith("__")  # python-hcl2's own keys
    }


def bare(expression: str) -> str:
    """`${map(object({a = number}))}` -> `map(object({a=number}))`: comparable types."""
    text = expression[2:-1] if expression.startswith("${") else expression
    return re.sub(r"\s+", "", text)


def resources(blocks: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for item in blocks.get("resource", []):
        for kind, by_name in item.items():
            for name, body in by_name.items():
                if name.startswith("__"):  # python-hcl2's own keys
                    continue
                found[f"{kind.strip(chr(34))}.{name.strip(chr(34))}"] = body
    return found


@pytest.mark.parametrize("module", EVERY_MODULE, ids=lambda p: p.name)
def test_every_module_honours_the_contract(module: Path) -> None:
    blocks = load(module)
    variables = named(blocks["variable"])
    expected = {"pool": "string", "nodes": NODES_TYPE, "cluster": CLUSTER_TYPE}
    expected["bootstrap"] = BOOTSTRAP_TYPE
    for name, type_ in expected.items():
        assert name in variables, f"{module.name} lacks variable {name}"
        assert bare(variables[name]["type"]) == bare(type_), f"{module.name}: var.{name}"
        assert "default" not in variables[name], f"{module.name}: var.{name} is nuvem's to pass"
    assert variables["cluster"].get("sensitive") is True, f"{module.name}: the token is a secret"
    outputs = named(blocks["output"])
    assert "nodes" in outputs, f"{module.name} lacks output nodes"
    # One machine per key of var.nodes, and the output made of those very resources.
    per_node = {
        address: body
        for address, body in resources(blocks).items()
        if body.get("for_each") == "${var.nodes}"
    }
    assert per_node, f"{module.name} has no resource with for_each = var.nodes"
    assert not any("count" in body for body in resources(blocks).values())
    source = re.search(r"for \w+, \w+ in (\w+\.\w+)", outputs["nodes"]["value"])
    assert source is not None, f"{module.name}: output nodes is not a for over the nodes"
    assert source[1] in per_node, f"{module.name}: output nodes comes from {source[1]}"
    value = re.sub(r"\s+", "", outputs["nodes"]["value"])
    assert "address=" in value, module.name
    assert "id=" in value, module.name


@pytest.mark.parametrize("name", VM_MODULES)
def test_vm_modules_pin_their_provider_and_render_nuvems_user_data(name: str) -> None:
    blocks = load(MODULES / name)
    [terraform] = blocks["terraform"]
    [providers] = terraform["required_providers"]
    for spec in named([providers]).values():
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec["version"].strip(chr(34))), spec  # pinned
    calls = re.findall(
        r"templatefile\(var\.bootstrap\.cloud_init, \{(.*?)\}\)",
        json.dumps(resources(blocks)).replace('\\"', '"'),
    )
    assert len(calls) == 1, calls
    passed = set(re.findall(r"(\w+) = ", calls[0]))
    assert passed == {*TEMPLATE_VARS, "playbook"}


def test_the_local_module_takes_its_state_root() -> None:
    variables = named(load(MODULES / "local")["variable"])
    assert bare(variables["state_root"]["type"]) == "string"
    assert "default" not in variables["state_root"]  # nuvem fills it in


def test_every_module_is_formatted() -> None:
    terraform = need_terraform()
    for folder in (MODULES, Path(__file__).parent / "modules"):
        run = subprocess.run(
            [terraform, "fmt", "-check", "-recursive", "-diff", str(folder)],
            capture_output=True,
            text=True,
            env={"CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": "/dev/null", "PATH": ""},
        )
        assert run.returncode == 0, run.stdout + run.stderr


def render_user_data(tmp_path: Path) -> str:
    """The cloud-init user data as terraform renders it (a root module with one output)."""
    terraform = need_terraform()
    values = {**TEMPLATE_VARS, "playbook": PLAYBOOK.read_text()}
    root = {
        "variable": {"values": {"type": "any", "sensitive": True}},
        "resource": {"terraform_data": {"rendered": {"input": "rendered"}}},
        "output": {
            "user_data": {
                "value": f"${{templatefile({json.dumps(str(CLOUD_INIT))}, var.values)}}",
                "sensitive": True,
            }
        },
    }
    (tmp_path / "main.tf.json").write_text(json.dumps(root))
    (tmp_path / "values.auto.tfvars.json").write_text(json.dumps({"values": values}))
    env = {"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "PATH": "/usr/bin:/bin"}
    env["TF_CLI_CONFIG_FILE"] = "/dev/null"
    for args in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        run = subprocess.run(
            [terraform, *args], cwd=tmp_path, capture_output=True, text=True, env=env
        )
        assert run.returncode == 0, run.stdout + run.stderr
    run = subprocess.run(
        [terraform, "output", "-raw", "user_data"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_cloud_init_template_renders_valid_user_data(tmp_path: Path) -> None:
    text = render_user_data(tmp_path)
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    files = {item["path"]: item for item in config["write_files"]}
    token = files["/etc/nuvem/cluster-token"]
    assert token["content"] == TEMPLATE_VARS["token"]
    assert token["permissions"] == "0600"
    assert token["owner"] == "root:root"
    assert files["/etc/nuvem/node.yml"]["content"] == PLAYBOOK.read_text()
    node_vars = json.loads(files["/etc/nuvem/node-vars.json"]["content"])
    assert files["/etc/nuvem/node-vars.json"]["permissions"] == "0600"
    assert node_vars["nuvem_token_source"] == "/etc/nuvem/cluster-token"
    assert node_vars["nuvem_labels"] == TEMPLATE_VARS["labels"]
    assert node_vars["nuvem_run_as"] == "systemd"
    assert TEMPLATE_VARS["token"] not in json.dumps(node_vars)
    commands = [[str(part) for part in command] for command in config["runcmd"]]
    install = next(c for c in commands if c[0].endswith("/pip"))
    pools = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["pools"]
    assert TEMPLATE_VARS["nuvem_package"] in install
    assert set(pools) <= set(install)  # the very ansible-core nuvem pins
    playbook = commands[-1]
    assert playbook[0].endswith("/ansible-playbook")
    assert playbook[-1] == "/etc/nuvem/node.yml"
    assert "@/etc/nuvem/node-vars.json" in playbook


def test_the_playbook_passes_ansibles_syntax_check(tmp_path: Path) -> None:
    ansible = need_ansible()
    run = subprocess.run(
        [str(ansible), "--syntax-check", "-i", "localhost,", "-c", "local", str(PLAYBOOK)],
        capture_output=True,
        text=True,
        env={"PATH": f"{ansible.parent}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
