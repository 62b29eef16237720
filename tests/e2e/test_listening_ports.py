"""Every port a running platform listens on refuses unauthenticated control, and the CLI
reads the gateway's limits' answers as documented."""

from __future__ import annotations

import socket
from pathlib import Path

from support import Nuvem, worker_pids

STACK = "functions: {echo: {handler: 'functions:echo'}}\n"


def _children(pid: int) -> set[int]:
    """`pid` and every process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces: the parent pid follows its closing ')'.
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = {pid}
    grew = True
    while grew:
        more = {child for child, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _listening() -> dict[int, tuple[str, int]]:
    """inode -> (host, port) of every listening TCP socket on this machine."""
    found = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # The kernel writes each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            host = socket.inet_ntop(family, raw)
            found[int(fields[9])] = (host, int(port, 16))
    return found


def _unauthenticated_control(host: str, port: int) -> bytes:
    """What an HTTP control request without credentials gets: the status line, or b'' when
    the connection is closed (a non-HTTP socket)."""
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /system/shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return data.split(b"\r\n")[0]


def test_every_listening_port_refuses_unauthenticated_control(nuvem: Nuvem) -> None:
    nuvem.write("nuvem.yaml", STACK)
    gateway = nuvem.up("-f", "nuvem.yaml")
    nuvem.wait_ready("echo")
    pids = _children(gateway) | set(worker_pids(nuvem.root))
    assert len(pids) > 1, "the workers should be running"
    listening = _listening()
    ports = {
        listening[inode] for pid in pids for inode in _socket_inodes(pid) if inode in listening
    }
    assert ("127.0.0.1", nuvem.port) in ports
    for host, port in sorted(ports):
        status = _unauthenticated_control(host, port)
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
