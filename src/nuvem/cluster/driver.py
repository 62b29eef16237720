"""A Ray driver in this process, connected to the cluster with its token.

The runtime places replicas through it (actors with resources and labels). It costs a
core worker and 1.5-2 s to connect, so membership questions go to the GCS instead
(membership.py); a process has at most one driver.
"""

from __future__ import annotations

from nuvem.cluster.gcs import probe, ray_module
from nuvem.cluster.token import ClusterToken
from nuvem.errors import ClusterError
from nuvem.stack.cluster import split_address


def connect(address: str, token: ClusterToken, node_ip: str = "") -> None:
    """Connect this process to the cluster at `address` as a Ray driver.

    `node_ip` is this machine's address in the cluster (a node must run here with it,
    as the head does beside the gateway); default: the head's host. A wrong token or
    address fails here, fast, with nuvem's error instead of Ray's retries."""
    probe(address, token)  # checks the token and address, and makes Ray present the token
    ray = ray_module("ray")
    if ray.is_initialized():
        return
    try:
        ray.init(
            address=address,
            _node_ip_address=node_ip or split_address(address)[0],
            logging_level="warning",
            log_to_driver=False,  # replicas' output reaches nuvem's log book, not stderr
            configure_logging=False,  # logging belongs to the CLI
        )
    except ConnectionError as exc:
        raise ClusterError(
            f"cannot connect a Ray driver to {address}: {exc}",
            hint="a Ray node must run on this machine with the given node_ip",
        ) from None


def disconnect() -> None:
    ray = ray_module("ray")
    if ray.is_initialized():
        ray.shutdown()
