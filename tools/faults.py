"""Cut and heal cluster-bus links between running respkv nodes (fault injection).

Every node keeps one bus connection per peer.  ``BUSFAULT CUT <node-id> ...``
makes a node drop its links to those peers and refuse new ones; ``BUSFAULT HEAL``
lets them reconnect (the dialing side retries within about a second).  Client
ports stay open, so a test can still talk to both sides of a partition.

This tool issues those commands to the nodes it is given, on both ends of every
link, so a cut is symmetric like a real network partition::

    python -m tools.faults isolate 127.0.0.1:7000 --cluster 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002
    python -m tools.faults cut 127.0.0.1:7000 127.0.0.1:7001
    python -m tools.faults heal --cluster 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002
    python -m tools.faults status --cluster 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002

The functions are importable for tests (``isolate``, ``cut``, ``heal``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import redis

TIMEOUT = 5.0


def _client(address: str) -> redis.Redis:
    host, _, port = address.rpartition(":")
    return redis.Redis(host=host or "127.0.0.1", port=int(port), socket_timeout=TIMEOUT, decode_responses=True)


def node_id(address: str) -> str:
    """The cluster node id of the node at ``HOST:PORT``."""
    with _client(address) as client:
        return client.execute_command("CLUSTER", "MYID")


def cut(a: str, b: str) -> None:
    """Cut the bus link between the nodes at addresses ``a`` and ``b`` (both ends)."""
    id_a, id_b = node_id(a), node_id(b)
    with _client(a) as client:
        client.execute_command("BUSFAULT", "CUT", id_b)
    with _client(b) as client:
        client.execute_command("BUSFAULT", "CUT", id_a)


def isolate(victim: str, cluster: Sequence[str]) -> None:
    """Cut every bus link between ``victim`` and the other nodes of ``cluster``."""
    for other in cluster:
        if other != victim:
            cut(victim, other)


def heal(cluster: Sequence[str]) -> None:
    """Restore every cut link of every node in ``cluster``."""
    for address in cluster:
        with _client(address) as client:
            client.execute_command("BUSFAULT", "HEAL")


def status(cluster: Sequence[str]) -> dict[str, list[str]]:
    """Address → the node ids whose links that node has cut."""
    result = {}
    for address in cluster:
        with _client(address) as client:
            result[address] = list(client.execute_command("BUSFAULT", "LIST"))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.faults", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    p = commands.add_parser("isolate", help="cut one node off from all others")
    p.add_argument("victim", help="HOST:PORT of the node to isolate")
    p.add_argument("--cluster", nargs="+", required=True, metavar="HOST:PORT")
    p = commands.add_parser("cut", help="cut the link between two nodes")
    p.add_argument("a", metavar="HOST:PORT")
    p.add_argument("b", metavar="HOST:PORT")
    for name, text in (("heal", "restore every cut link"), ("status", "show cut links per node")):
        p = commands.add_parser(name, help=text)
        p.add_argument("--cluster", nargs="+", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    try:
        if args.action == "isolate":
            isolate(args.victim, args.cluster)
        elif args.action == "cut":
            cut(args.a, args.b)
        elif args.action == "heal":
            heal(args.cluster)
        else:
            for address, ids in status(args.cluster).items():
                print(f"{address}: {' '.join(ids) if ids else '-'}")
    except (redis.RedisError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
