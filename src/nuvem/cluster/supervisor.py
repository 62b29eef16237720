"""`nuvem node join` as a process: join, stay until asked to leave, then drain and leave.

Ctrl-C (SIGINT) or SIGTERM starts the leave: the node is drained, then its Ray processes
stop. A second Ctrl-C while draining kills them at once. If Ray's processes end by
themselves (the head declared the node dead after a network cut, or it crashed), the
supervisor says so, ends what is left of them and joins again, with back-off, until it
is asked to stop (`--no-rejoin`: it exits non-zero instead, for its own supervisor).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from nuvem.backoff import backoff
from nuvem.cluster import record
from nuvem.cluster.drain import DrainHook, wait_until_idle
from nuvem.cluster.membership import NodeState
from nuvem.cluster.node import DRAIN_TIMEOUT, JOIN_TIMEOUT, RayNode
from nuvem.cluster.options import JoinOptions
from nuvem.cluster.process_session import process_alive
from nuvem.config import STATE_DIR_VARIABLE
from nuvem.errors import ClusterError, Conflict

NODE_LOG = Path("cluster") / "node.log"
RAY_LOG = Path("cluster") / "ray-node.log"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_POLL = 0.1  # seconds, when waiting on another process
_WATCH = 1.0  # seconds between looks at the node's state in the head
REJOIN_BACKOFF = 1.0  # seconds before the first rejoin; doubles per failed one
MAX_REJOIN_BACKOFF = 30.0


def run(
    options: JoinOptions,
    state_dir: Path,
    say: Callable[[str], None],
    hook: DrainHook = wait_until_idle,
    drain_timeout: float = DRAIN_TIMEOUT,
    rejoin: bool = True,
) -> int:
    """Join, then block until a signal; return the exit code. A node that is lost (the
    head declared it dead, or its Ray processes ended) joins again by itself, with
    back-off, unless `rejoin` is off: then the exit is non-zero at once."""
    _refuse_second_node(state_dir)
    signals = _Signals()
    previous = {sig: signal.signal(sig, signals.on_signal) for sig in _SIGNALS}
    attempt = 0
    try:
        while True:
            try:
                code = _serve(options, state_dir, say, signals, hook, drain_timeout, attempt)
            except ClusterError as exc:
                if not rejoin or attempt == 0:
                    raise  # the first join fails loudly: a wrong address, token, or IP
                say(f"could not join again: {exc}")
                code = None
            if code is not None:
                return code
            if not rejoin:
                return 1
            attempt += 1
            wait = backoff(attempt, REJOIN_BACKOFF, MAX_REJOIN_BACKOFF)
            say(f"joining again in {wait:.0f}s (attempt {attempt}); Ctrl-C to stop")
            if signals.woken.wait(wait):
                return 0  # asked to stop while no node ran: nothing to drain
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(
    options: JoinOptions,
    state_dir: Path,
    say: Callable[[str], None],
    signals: _Signals,
    hook: DrainHook,
    drain_timeout: float,
    attempt: int,
) -> int | None:
    """One life of the node: join, stay, leave when signalled (the exit code); None when
    the node was lost instead."""
    say(f"joining {options.address}" if attempt == 0 else f"rejoining {options.address}")
    node = RayNode.join(options, state_dir / RAY_LOG, node_environ(os.environ, state_dir))
    signals.node = node
    watch = signals.watch = _Watch(node, signals)
    threading.Thread(target=watch.run, name="node-watch", daemon=True).start()
    try:
        record.write_node(
            state_dir,
            record.NodeRecord(
                head=options.address,
                address=node.node.address,
                port=node.node.port,
                node_id=node.node.id,
                pid=os.getpid(),
                ray_pid=node.pid,
                log=str(state_dir / RAY_LOG),
            ),
        )
        offer = node.node.total
        say(
            f"joined {options.address} as node {node.node.id[:12]} at {node.node.address} "
            f"({offer.cpu:g} CPU, {offer.gpu:g} GPU, {offer.memory / 2**30:.1f} GiB); "
            "Ctrl-C to leave"
        )
        if signals.signalled.is_set():
            pass  # Ctrl-C came while joining: leave at once
        else:
            watch.woken.wait()  # a signal, or the node's end
        if not signals.signalled.is_set() and (watch.drained.is_set() or _drained(node)):
            # Drained by the head on purpose (a pool removing this machine): leaving is
            # what was asked, so no rejoin, and exit 0 so a service manager lets it be.
            say("the head drained this node; it has left the cluster")
            node.kill()
            return 0
        if not signals.signalled.is_set():
            why = (
                "the head declared this node dead"
                if watch.lost.is_set()
                else f"its Ray processes ended (code {node.session.exited()})"
            )
            say(f"the node is gone: {why}; its last lines:\n{node.session.log_tail()}")
            node.kill()
            return None
        say(f"leaving: draining node {node.node.id[:12]} (up to {drain_timeout:g}s)")
        started = time.monotonic()
        drained = node.leave(hook, drain_timeout)
        if signals.forced.is_set():
            say("stopped without draining")
            return 130
        if not drained:
            say("the head did not answer, so the node stopped without draining")
            return 1
        say(f"left {options.address} in {time.monotonic() - started:.1f}s")
        return 0
    finally:
        signals.node = signals.watch = None
        record.clear(state_dir, record.NODE_RECORD)
        if node.session.members():
            node.kill()


def _drained(node: RayNode) -> bool:
    """Whether the head drained this node (it ended because it was asked to go)."""
    try:
        seen = [n for n in node.membership.nodes() if n.id == node.node.id]
    except ClusterError:
        return False
    return bool(seen) and (seen[0].drained or seen[0].state is NodeState.DRAINING)


class _Signals:
    """Ctrl-C and SIGTERM, across the node's lives: the first leaves, the second forces."""

    def __init__(self) -> None:
        self.node: RayNode | None = None  # the node of the present life, if one runs
        self.watch: _Watch | None = None  # and what its life waits on
        self.woken = threading.Event()
        self.signalled = threading.Event()  # asked to leave
        self.forced = threading.Event()  # asked twice: stop at once

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signalled.is_set():
            self.forced.set()
            if self.node is not None:
                self.node.kill()
        self.signalled.set()
        self.woken.set()
        if self.watch is not None:
            self.watch.woken.set()


class _Watch:
    """What wakes one life of the node: a signal, Ray's processes ending, or the head
    declaring the node dead (a raylet the head gave up on may exit without `ray start`
    noticing)."""

    def __init__(self, node: RayNode, signals: _Signals) -> None:
        self.node = node
        self.signalled = signals.signalled
        self.woken = threading.Event()
        self.lost = threading.Event()  # the head lists the node dead
        self.drained = threading.Event()  # the head was seen draining it
        self._signals = signals

    def run(self) -> None:
        """In a thread of its own, so a head that does not answer never delays Ctrl-C."""
        while not self.signalled.is_set():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.node.session.process.wait(timeout=_WATCH)
                break  # Ray's processes ended
            try:
                state = self.node.state()
            except ClusterError:
                state = None  # the head cannot be asked now: the node may well be fine
            if state is NodeState.DRAINING:
                self.drained.set()
            dead = state is NodeState.DEAD
            if dead and not self.signalled.is_set():  # not our own drain
                self.lost.set()
                break
        self.woken.set()


def detach(argv: Sequence[str], state_dir: Path, within: float = JOIN_TIMEOUT) -> record.NodeRecord:
    """Run `nuvem ARGV` (a foreground `node join`) in the background; return its record
    once joined."""
    _refuse_second_node(state_dir)
    log_path = state_dir / NODE_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "nuvem.cli.main", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = record.read_node(state_dir)
        if found is not None and found.pid == process.pid:
            return found
        if process.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
            raise ClusterError(
                f"nuvem node join exited with code {process.returncode} while joining:\n{tail}"
            )
        time.sleep(_POLL)
    process.terminate()
    raise ClusterError(f"the node did not join within {within:g}s", hint=f"see {log_path}")


def leave(state_dir: Path, within: float = DRAIN_TIMEOUT + 30) -> record.NodeRecord:
    """Ask the node this state folder runs to leave (SIGTERM), and wait until it has."""
    found = record.read_node(state_dir)
    if found is None or not process_alive(found.pid):
        record.clear(state_dir, record.NODE_RECORD)
        raise ClusterError(
            f"no node runs from {state_dir}",
            hint="start one with `nuvem node join HOST:PORT --token-file F`",
        )
    os.kill(found.pid, signal.SIGTERM)
    deadline = time.monotonic() + within
    while process_alive(found.pid):
        if time.monotonic() > deadline:
            raise ClusterError(
                f"the node (pid {found.pid}) did not leave within {within:g}s",
                hint=f"see {state_dir / NODE_LOG}; `kill -9 {found.pid}` ends it at once",
            )
        time.sleep(_POLL)
    return found


def node_environ(base: Mapping[str, str], state_dir: Path) -> dict[str, str]:
    """The environment of the node's Ray processes: its replica actors keep code and
    environments in the node's state folder, which they find there (`--state-dir` or not)."""
    return {**base, STATE_DIR_VARIABLE: str(state_dir)}


def _refuse_second_node(state_dir: Path) -> None:
    found = record.read_node(state_dir)
    if found is not None and process_alive(found.pid):
        raise Conflict(
            f"this state folder runs a node already (pid {found.pid}, at {found.address})",
            hint="`nuvem node leave` first, or give another --state-dir",
        )
