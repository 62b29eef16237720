"""Every port a running platform listens on refuses unauthenticated control, and the CLI
reads the gateway's limits' answers as documented."""

from __future__ import annotations

from listening import children, listening, socket_inodes, unauthenticated_control
from support import Nuvem, worker_pids

STACK = "functions: {echo: {handler: 'functions:echo'}}\n"


def test_every_listening_port_refuses_unauthenticated_control(nuvem: Nuvem) -> None:
    nuvem.write("nuvem.yaml", STACK)
    gateway = nuvem.up("-f", "nuvem.yaml")
    nuvem.wait_ready("echo")
    pids = children(gateway) | set(worker_pids(nuvem.root))
    assert len(pids) > 1, "the workers should be running"
    found = listening()
    ports = {found[inode] for pid in pids for inode in socket_inodes(pid) if inode in found}
    assert ("127.0.0.1", nuvem.port) in ports
    for host, port in sorted(ports):
        status = unauthenticated_control(host, port)
        assert status == b"" or status.split()[1] in (b"401", b"403"), (host, port, status)
    assert nuvem.healthy()  # still serving: nothing was shut down


def test_invoke_exits_2_on_413(nuvem: Nuvem) -> None:
    nuvem.env["NUVEM_MAX_BODY"] = "1024"
    nuvem.write("nuvem.yaml", STACK)
    nuvem.up("-f", "nuvem.yaml")
    nuvem.wait_ready("echo")
    result = nuvem.run("invoke", "echo", "-d", "x" * 2000, check=False)
    assert result.returncode == 2, result.stderr
    assert "NUVEM_MAX_BODY" in result.stderr
    assert nuvem.run("invoke", "echo", "-d", "small").stdout == "small"


def test_up_max_body_option_wins_over_the_environment(nuvem: Nuvem) -> None:
    nuvem.env["NUVEM_MAX_BODY"] = "1024"
    nuvem.write("nuvem.yaml", STACK)
    nuvem.up("-f", "nuvem.yaml", "--max-body", "4Ki")
    nuvem.wait_ready("echo")
    assert nuvem.run("invoke", "echo", "-d", "x" * 3000).stdout == "x" * 3000
    result = nuvem.run("invoke", "echo", "-d", "x" * 5000, check=False)
    assert result.returncode == 2, result.stderr
    assert "4096 bytes" in result.stderr
