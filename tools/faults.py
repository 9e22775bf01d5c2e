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

BUSFAULT is a fault-injection command, so nodes refuse it unless started with
``--enable-debug-command yes`` (``respkv cluster up --enable-debug-command``), or
``local`` for clients on their own host; the tool says so when a node refuses.
For nodes with a password, pass ``--password`` (or set ``REDISCLI_AUTH``, as for
``redis-cli``).

The functions are importable for tests (``isolate``, ``cut``, ``heal``, ``status``,
each taking an optional ``password``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import redis

TIMEOUT = 5.0
#: What a node refusing BUSFAULT says (Redis's text for DEBUG, see enable-debug-command).
REFUSED = "BUSFAULT command not allowed"
#: What to do about it, printed with the error.
REFUSED_HINT = (
    "the node refuses fault injection: start the nodes with --enable-debug-command yes "
    "(respkv cluster up --enable-debug-command, or respkv server --enable-debug-command yes)"
)


def _client(address: str, password: str | None = None) -> redis.Redis:
    host, _, port = address.rpartition(":")
    return redis.Redis(host=host or "127.0.0.1", port=int(port), password=password or None,
                       socket_timeout=TIMEOUT, decode_responses=True)


def node_id(address: str, password: str | None = None) -> str:
    """The cluster node id of the node at ``HOST:PORT``."""
    with _client(address, password) as client:
        return client.execute_command("CLUSTER", "MYID")


def cut(a: str, b: str, password: str | None = None) -> None:
    """Cut the bus link between the nodes at addresses ``a`` and ``b`` (both ends)."""
    id_a, id_b = node_id(a, password), node_id(b, password)
    with _client(a, password) as client:
        client.execute_command("BUSFAULT", "CUT", id_b)
    with _client(b, password) as client:
        client.execute_command("BUSFAULT", "CUT", id_a)


def isolate(victim: str, cluster: Sequence[str], password: str | None = None) -> None:
    """Cut every bus link between ``victim`` and the other nodes of ``cluster``."""
    for other in cluster:
        if other != victim:
            cut(victim, other, password)


def heal(cluster: Sequence[str], password: str | None = None) -> None:
    """Restore every cut link of every node in ``cluster``."""
    for address in cluster:
        with _client(address, password) as client:
            client.execute_command("BUSFAULT", "HEAL")


def status(cluster: Sequence[str], password: str | None = None) -> dict[str, list[str]]:
    """Address → the node ids whose links that node has cut."""
    result = {}
    for address in cluster:
        with _client(address, password) as client:
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
    for p in commands.choices.values():
        p.add_argument("--password", default=os.environ.get("REDISCLI_AUTH"),
                       help="the nodes' password (default: $REDISCLI_AUTH)")
    args = parser.parse_args(argv)
    password = args.password
    try:
        if args.action == "isolate":
            isolate(args.victim, args.cluster, password)
        elif args.action == "cut":
            cut(args.a, args.b, password)
        elif args.action == "heal":
            heal(args.cluster, password)
        else:
            for address, ids in status(args.cluster, password).items():
                print(f"{address}: {' '.join(ids) if ids else '-'}")
    except (redis.RedisError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if REFUSED in str(exc):
            print(REFUSED_HINT, file=sys.stderr)
        elif isinstance(exc, redis.AuthenticationError) or "NOAUTH" in str(exc):
            print("the nodes require a password: pass --password (or set REDISCLI_AUTH)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
