"""The Ray head nuvem starts beside the gateway, or the one it uses when it runs already."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

from nuvem.cluster import record
from nuvem.cluster.gcs import HeadUnreachable
from nuvem.cluster.membership import Membership, NodeState
from nuvem.cluster.options import ExistingHead, HeadOptions, head_command, ray_environ
from nuvem.cluster.ports import free_node_ports, free_ports, port_free
from nuvem.cluster.process_session import ProcessSession
from nuvem.cluster.token import ClusterToken, ensure_token, read_token, token_path
from nuvem.errors import ClusterError

START_TIMEOUT = 90.0  # seconds; a head takes 4-9 s here, more on a loaded machine
STOP_GRACE = 20.0


class RayHead:
    """A head nuvem started: the session of its `ray start --head --block` process."""

    def __init__(self, session: ProcessSession, address: str, token: ClusterToken) -> None:
        self.session = session
        self.address = address  # HOST:PORT that nodes join
        self.token = token

    @classmethod
    def start(
        cls,
        options: HeadOptions,
        log_path: Path,
        environ: Mapping[str, str] | None = None,
        within: float = START_TIMEOUT,
    ) -> RayHead:
        """Start the head and return once it is up (its GCS answers with the token and
        the head node is alive); ClusterError, with Ray's last lines, if it does not."""
        token = read_token(options.token_file)
        if not port_free(options.port):
            raise ClusterError(
                f"port {options.port} is taken, so the Ray head cannot listen there",
                hint="stop what holds it (another Ray head?) or set another `cluster.port`",
            )
        ports = free_node_ports(options.workers)
        # Ray Client starts only where its package is installed, then on a port of its own.
        client_port = free_ports(1)[0] if importlib.util.find_spec("grpc") else None
        session = ProcessSession.spawn(
            head_command(options, ports, client_port),
            ray_environ(os.environ if environ is None else environ, token.path, head=True),
            log_path,
        )
        try:
            address = _wait_up(session, options, token, within)
        except BaseException:
            session.kill()
            raise
        return cls(session, address, token)

    @property
    def pid(self) -> int:
        return self.session.pid

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop every process of the head; the nodes notice within ~2 s and exit."""
        self.session.stop(grace)

    def __enter__(self) -> RayHead:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_up(
    session: ProcessSession, options: HeadOptions, token: ClusterToken, within: float
) -> str:
    # The GCS listens on every interface: this machine reaches it on loopback whatever
    # address Ray chose for the head, which is read back from the head's own node entry.
    local = f"{options.node_ip or '127.0.0.1'}:{options.port}"
    deadline = time.monotonic() + within
    membership: Membership | None = None
    while time.monotonic() < deadline:
        code = session.exited()
        if code is not None:
            raise ClusterError(
                f"the Ray head exited with code {code} while starting; its last lines:\n"
                f"{session.log_tail()}",
                hint=f"the whole log is {session.log_path}",
            )
        try:
            membership = membership or Membership(local, token)
            heads = [n for n in membership.nodes() if n.head and n.state is NodeState.ALIVE]
        except HeadUnreachable:  # not listening yet
            heads = []
        if heads:
            return f"{heads[0].address}:{options.port}"
        time.sleep(0.1)  # another process starting: nothing to await on here
    raise ClusterError(
        f"the Ray head did not come up within {within:g}s; its last lines:\n{session.log_tail()}",
        hint=f"the whole log is {session.log_path}",
    )


@contextlib.contextmanager
def running_head(
    plan: HeadOptions | ExistingHead | None,
    state_dir: Path,
    say: Callable[[str], None] = lambda line: None,
) -> Iterator[str | None]:
    """The stack's head for as long as the gateway runs: started (and stopped after), or
    checked when it runs already; recorded in the state folder for the other commands.
    Yields its address, or None for engine local."""
    if plan is None:
        yield None
        return
    if isinstance(plan, ExistingHead):
        token = read_token(plan.token_file)
        Membership(plan.address, token)  # refuses a wrong address or token now
        record.write_head(state_dir, record.HeadRecord(plan.address, str(token.path), None))
        say(f"cluster: Ray head at {plan.address} (not started by nuvem)")
        try:
            yield plan.address
        finally:
            record.clear(state_dir, record.HEAD_RECORD)
        return
    if plan.token_file == token_path(state_dir):
        ensure_token(state_dir)
    say("cluster: starting the Ray head")
    head = RayHead.start(plan, state_dir / "cluster" / "head.log")
    try:
        record.write_head(
            state_dir, record.HeadRecord(head.address, str(head.token.path), head.pid)
        )
        say(f"cluster: Ray head at {head.address}; join with `nuvem node token --command`")
        yield head.address
    finally:
        record.clear(state_dir, record.HEAD_RECORD)
        head.stop()
