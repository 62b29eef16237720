"""This machine as a node of a Ray cluster: joined with the token, left by draining."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from nuvem.cluster.drain import DrainHook, DrainRequest, wait_until_idle
from nuvem.cluster.membership import Membership, Node, NodeState, wait_for_node
from nuvem.cluster.options import JoinOptions, join_command, ray_environ
from nuvem.cluster.ports import free_node_ports
from nuvem.cluster.process_session import ProcessSession
from nuvem.cluster.token import read_token
from nuvem.errors import ClusterError, ClusterTokenError
from nuvem.stack.cluster import split_address

JOIN_TIMEOUT = 90.0  # seconds; a node is alive 3-6 s after `ray start` here, more when busy
DRAIN_TIMEOUT = 30.0
STOP_GRACE = 5.0  # after the drain, for Ray's processes to end on SIGTERM
_ALIVE = frozenset({NodeState.ALIVE})
SETTLE_TIMEOUT = 10.0
DRAIN_MESSAGE = "nuvem node leave: the node is draining"  # the head's reason, once dead
_REFUSED = "InvalidAuthToken"  # what Ray prints when the head refuses the token
_STARTED = "Ray runtime started."  # what `ray start` prints once its start-up is done


class RayNode:
    """A node this process started: the session of its `ray start --block` process."""

    def __init__(
        self, session: ProcessSession, options: JoinOptions, membership: Membership, node: Node
    ) -> None:
        self.session = session
        self.options = options
        self.membership = membership
        self.node = node  # as the head saw it once alive

    @classmethod
    def join(
        cls,
        options: JoinOptions,
        log_path: Path,
        environ: Mapping[str, str] | None = None,
        within: float = JOIN_TIMEOUT,
    ) -> RayNode:
        """Join the cluster and return once the head lists this node alive.

        The token is checked against the head first (well under a second), so a wrong
        one is refused at once instead of after Ray's ~22 s of retries."""
        token = read_token(options.token_file)
        membership = Membership(options.address, token)
        options = replace(options, node_ip=options.node_ip or facing_ip(options.address))
        ports = free_node_ports(options.workers)
        session = ProcessSession.spawn(
            join_command(options, ports),
            ray_environ(os.environ if environ is None else environ, token.path, head=False),
            log_path,
        )
        try:
            node = wait_for_node(
                membership,
                options.node_ip,
                ports.node_manager,
                _ALIVE,
                within,
                still_starting=lambda: session.exited() is None,
            )
        except BaseException:
            session.kill()
            raise
        if node is None:
            session.kill()
            raise _failed(session, options, within)
        _settle(session)
        return cls(session, options, membership, node)

    @property
    def pid(self) -> int:
        return self.session.pid

    def state(self) -> NodeState:
        """The node's state as the head sees it now."""
        node = self.membership.node_at(self.node.address, self.node.port)
        return NodeState.DEAD if node is None or node.id != self.node.id else node.state

    def leave(self, hook: DrainHook = wait_until_idle, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Drain (mark draining, run `hook` until it returns or `timeout` passes), then stop
        this node's Ray processes, and only them. False when the head could not be asked
        to drain the node (it is stopped all the same)."""
        deadline = time.time() + timeout
        try:
            if self.state() is not NodeState.DEAD and self.session.exited() is None:
                self.membership.drain(self.node, DRAIN_MESSAGE, deadline)
                hook(DrainRequest(self.node, self.membership, deadline))
            drained = True
        except ClusterError:  # the head is gone or refuses: nothing to drain with
            drained = False
        self.session.stop(STOP_GRACE)
        return drained

    def kill(self) -> None:
        """SIGKILL every process of this node, as a crash would (for tests and Ctrl-C twice)."""
        self.session.kill()


def _settle(session: ProcessSession) -> None:
    """Wait (briefly, at most) until `ray start` has finished its own start-up too.

    The head lists a node alive a moment before `ray start` is done; a SIGTERM then
    would wait ~10 s in Ray's start-up code before its handler runs. Ray's own line is
    only a hint: if it never comes, the node is used all the same."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline and session.exited() is None:
        if _STARTED in session.log_tail(40):
            return
        time.sleep(0.05)  # another process's output: nothing to await on here


def facing_ip(head: str) -> str:
    """The address of this machine's interface toward `head` (what Ray would choose)."""
    host, port = split_address(head)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))  # UDP: picks the route, sends nothing
        ip: str = probe.getsockname()[0]
    if ip == "127.0.0.1":
        raise ClusterError(
            f"this machine reaches the head {head} over loopback, and Ray would swap "
            "127.0.0.1 for another address",
            hint="give --node-ip 127.0.0.2 (or up) to run a node beside the head",
        )
    return ip


def _failed(session: ProcessSession, options: JoinOptions, within: float) -> ClusterError:
    tail = session.log_tail()
    if _REFUSED in tail:
        return ClusterTokenError(
            f"the Ray head at {options.address} refused the cluster token from "
            f"{options.token_file}",
            hint="copy the token again from the head: `nuvem node token` there prints it",
        )
    code = session.exited()
    what = f"exited with code {code}" if code is not None else f"was not alive after {within:g}s"
    return ClusterError(
        f"the Ray node {options.node_ip} {what} while joining {options.address}; "
        f"its last lines:\n{tail}",
        hint=f"the whole log is {session.log_path}",
    )
