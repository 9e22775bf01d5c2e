"""Command line: ``respkv server ...`` runs one node in the foreground;
``respkv cluster up|down|status`` manages a local cluster of node processes."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from .cluster.gossip import parse_address
from .cluster.identity import IdentityError, SecretError
from .cluster.persisted import MembershipFileError
from .config import DIRECTIVES, Config, ConfigError
from .persistence.exceptions import PersistenceError

_LOG_LEVELS = {"debug": logging.DEBUG, "verbose": logging.INFO, "notice": logging.INFO,
               "warning": logging.WARNING}


def _server_parser(sub) -> None:
    p = sub.add_parser("server", help="run a node in the foreground")
    p.add_argument("--bind", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", help="client port (default 6379; 0 picks a free port)")
    p.add_argument("--dir", help="data directory, created if missing (default ./respkv-data)")
    p.add_argument("--config", help="redis.conf-style file of 'directive value' lines")
    p.add_argument("--loglevel", help="debug, verbose, notice or warning")
    p.add_argument("--requirepass", help="password clients must AUTH with")
    p.add_argument("--maxclients", help="most simultaneous clients (default 10000)")
    p.add_argument("--cluster", action="store_true", help="run as a cluster member (cluster-enabled yes)")
    p.add_argument("--join", action="extend", nargs="+", default=[], metavar="HOST:PORT",
                   help="client address of a member to join (repeatable; its bus port is PORT+10000 "
                        "unless written HOST:PORT@BUSPORT or the member is configured otherwise)")
    p.add_argument("--weight", help="this node's ring weight (cluster-weight, default 1)")
    p.add_argument("--rf", help="replication factor N (replication-factor, default 3)")
    p.add_argument("--routing", help="redirect or proxy (cluster-routing, default redirect)")
    p.add_argument("--cluster-port", help="cluster bus port (default: client port + 10000)")
    p.add_argument("--node-timeout", help="milliseconds of silence before a member is suspected (default 5000)")
    p.epilog = ("Any other directive of the configuration can be given as --NAME VALUE or --NAME=VALUE, "
                "as with redis-server (e.g. --enable-debug-command yes, --cluster-secret-file FILE).")
    p.set_defaults(func=_run_server)


def build_config(ns: argparse.Namespace) -> Config:
    """Defaults, then the config file, then command-line options."""
    config = Config()
    if ns.config:
        config.load_file(ns.config)
    for name in ("bind", "port", "dir", "loglevel", "requirepass", "maxclients"):
        value = getattr(ns, name)
        if value is not None:
            config.set_text(name, value, startup=True)
    for option, name in _CLUSTER_OPTIONS.items():
        value = getattr(ns, option, None)
        if value is not None:
            config.set_text(name, value, startup=True)
    if getattr(ns, "cluster", False):
        config.set_text("cluster-enabled", "yes", startup=True)
    if config["cluster-enabled"]:
        from .node import cluster_bus_port

        cluster_bus_port(config, config["port"])  # refuses a port without room for its bus port
    for name, value in directive_args(getattr(ns, "directives", None) or []):
        config.set_text(name, value, startup=True)
    if config["requirepass-file"] and not config["requirepass"]:
        config.set_text("requirepass", read_password_file(config["requirepass-file"]), startup=True)
    for address in getattr(ns, "join", None) or ():
        if not config["cluster-enabled"]:
            raise ConfigError("--join needs cluster mode (--cluster)")
        try:
            parse_address(address)
        except ValueError as exc:
            raise ConfigError(f"--join: {exc}") from None
    return config


def read_password_file(path: str) -> str:
    """The first line of ``requirepass-file``; ConfigError if it cannot be read or is empty."""
    try:
        with open(path, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read requirepass-file {path}: {exc.strerror}") from None
    if not password:
        raise ConfigError(f"requirepass-file {path} is empty: write the password on its first line")
    return password


def directive_args(words: list[str]) -> list[tuple[str, str]]:
    """``--directive value`` / ``--directive=value`` pairs, as ``redis-server`` takes them.

    Any directive of the configuration may be given on the command line this way
    (``--enable-debug-command yes``, ``--protected-mode=no``); unknown names and a
    directive without a value are configuration errors.
    """
    pairs = []
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--") or len(word) == 2:
            raise ConfigError(f"unexpected argument {word!r} (directives are given as --name value)")
        name, eq, value = word[2:].partition("=")
        if name.lower() not in DIRECTIVES:
            raise ConfigError(f"unknown directive '{name}' (from {word}); 'respkv server --help' lists the options")
        if not eq:
            if i + 1 >= len(words):
                raise ConfigError(f"--{name} needs a value")
            i += 1
            value = words[i]
        pairs.append((name, value))
        i += 1
    return pairs


#: Cluster options of ``respkv server`` and the directives they set.
_CLUSTER_OPTIONS = {
    "weight": "cluster-weight",
    "rf": "replication-factor",
    "routing": "cluster-routing",
    "cluster_port": "cluster-port",
    "node_timeout": "cluster-node-timeout",
}


async def _serve_until_signalled(config: Config, join: list[str]) -> None:
    """Serve until the node stops: on SIGTERM/SIGINT, or by ``SHUTDOWN``."""
    from .node import Node, serve_node

    node = Node(config)
    node.cluster_join = list(join)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_shut_down_on_signals, node, signals)
            await serve_node(node)
            nursery.cancel_scope.cancel()


async def _shut_down_on_signals(node, signals) -> None:
    """A signal shuts the node down as ``SHUTDOWN`` without arguments does (a
    snapshot first if a ``save`` schedule is set); a second one while that
    snapshot is written stops the node without waiting for it."""
    logger = logging.getLogger("respkv")
    shutting_down = False
    async with trio.open_nursery() as nursery:
        async for signum in signals:
            name = signal.Signals(signum).name
            if shutting_down:
                logger.warning("received %s again: stopping now, without waiting for the snapshot", name)
                node.stop()
                continue
            logger.info("received %s, shutting down", name)
            shutting_down = True

            async def shut_down(name=name):
                nonlocal shutting_down
                if not await node.shutdown():
                    logger.warning("%s received but errors trying to shut down the server, "
                                   "check the logs for more information", name)
                shutting_down = False

            nursery.start_soon(shut_down)


def _run_server(ns: argparse.Namespace) -> int:
    try:
        config = build_config(ns)
    except (ConfigError, OSError) as exc:
        print(f"respkv: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=_LOG_LEVELS[config["loglevel"]],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        trio.run(_serve_until_signalled, config, ns.join)
    except Exception as exc:
        reasons = _startup_failures(exc)
        if reasons is None:
            raise
        for reason in reasons:
            print(f"respkv: {reason}", file=sys.stderr)
        return 1
    return 0


#: Failures a node reports as one line (a port in use, an unreadable secret, a
#: corrupt commit log naming the file and offset...) rather than as a traceback.
_EXPECTED_FAILURES = (OSError, IdentityError, SecretError, ConfigError, MembershipFileError, PersistenceError)


def _startup_failures(exc: Exception) -> list[str] | None:
    """The one-line reasons behind ``exc`` (trio may group them), or None if any
    part of it is unexpected (a bug, shown with its traceback)."""
    if not isinstance(exc, BaseExceptionGroup):
        return [str(exc)] if isinstance(exc, _EXPECTED_FAILURES) else None
    expected, rest = exc.split(_EXPECTED_FAILURES)
    if rest is not None or expected is None:
        return None
    leaves = []
    stack = [expected]
    while stack:
        group = stack.pop()
        for inner in group.exceptions:
            (stack.append(inner) if isinstance(inner, BaseExceptionGroup) else leaves.append(str(inner)))
    return leaves


def _cluster_parser(sub) -> None:
    """``respkv cluster up|down|status|add|remove|restart``: a local cluster of node processes."""
    from . import launcher as L

    p = sub.add_parser("cluster", help="start, inspect or stop a local cluster of nodes")
    actions = p.add_subparsers(dest="action", required=True)
    dir_help = f"the cluster's directory (default ./{L.DEFAULT_DIR})"

    up = actions.add_parser("up", help="start N local nodes and wait until they form a cluster")
    up.add_argument("--nodes", type=int, default=L.DEFAULT_NODES,
                    help=f"number of nodes (default {L.DEFAULT_NODES})")
    up.add_argument("--port", type=int, default=L.DEFAULT_PORT,
                    help=f"client port of node 0; node i gets PORT+i, its bus PORT+i+10000 "
                    f"(default {L.DEFAULT_PORT}; 0 picks free ports)")
    up.add_argument("--dir", default=L.DEFAULT_DIR, help=dir_help)
    up.add_argument("--rf", type=int, help="replication factor (server default if omitted)")
    up.add_argument("--routing", choices=L.ROUTINGS,
                    help="redirect: answer MOVED; proxy: forward to the coordinator")
    up.add_argument("--node-timeout", type=int, metavar="MS",
                    help="failure detection timeout in milliseconds")
    up.add_argument("--timeout", type=float, default=L.DEFAULT_UP_TIMEOUT, metavar="SECONDS",
                    help=f"how long to wait for the cluster to be ready "
                    f"(default {L.DEFAULT_UP_TIMEOUT:.0f})")
    up.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for every node's respkv server (repeatable; "
                    "use the = form for values starting with '-')")
    up.add_argument("--requirepass", metavar="PASSWORD",
                    help="password every node requires (requirepass); the launcher keeps it in "
                    "the cluster's record and authenticates with it (a --requirepass among the "
                    "--server-arg values works the same)")
    up.add_argument("--enable-debug-command", action="store_true",
                    help="start the nodes with --enable-debug-command yes, allowing the "
                    "fault-injection command BUSFAULT (tools/faults.py)")
    up.set_defaults(func=_cluster_up)

    down = actions.add_parser("down", help="stop the nodes of a local cluster")
    down.add_argument("--dir", default=L.DEFAULT_DIR, help=dir_help)
    down.add_argument("--timeout", type=float, default=L.DEFAULT_STOP_TIMEOUT, metavar="SECONDS",
                      help=f"seconds between SIGTERM and SIGKILL (default {L.DEFAULT_STOP_TIMEOUT:.0f})")
    down.set_defaults(func=_cluster_down)

    st = actions.add_parser("status", help="show a local cluster's nodes, slots and state")
    st.add_argument("--dir", default=L.DEFAULT_DIR, help=dir_help)
    st.set_defaults(func=_cluster_status)

    rm = actions.add_parser("remove", help="remove a node for good: a running one leaves after handing its "
                            "keys over (CLUSTER LEAVE), a failed one is forgotten (CLUSTER FORGET)")
    rm.add_argument("node", help="the node: its name (node-3), client port or node id (any member's id, "
                    "also of nodes started by hand)")
    rm.add_argument("--dir", default=L.DEFAULT_DIR, help=dir_help)
    rm.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                    help="how long to wait for its keys to move and every running member to drop it "
                    "(default 600)")
    rm.set_defaults(func=_cluster_remove)

    add = actions.add_parser("add", help="start N more nodes; the keys of the slots they take over move to them")
    add.add_argument("count", type=int, nargs="?", default=1, help="how many nodes (default 1)")
    add.add_argument("--dir", default=L.DEFAULT_DIR, help=dir_help)
    add.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                     help="how long to wait for the nodes to be ready and the keys to move (default 600)")
    add.add_argument("--no-wait", action="store_true", help="return once the nodes are ready, "
                     "without waiting for the keys to move (respkv cluster status shows the moves)")
    add.set_defaults(func=_cluster_add)

    rs = actions.add_parser("restart", help="stop a node (SIGTERM) and start it again on its directory")
    rs.add_argument("node", help="the node: its name (node-3), client port or node id")
    rs.add_argument("--dir", default=L.DEFAULT_DIR, help=dir_help)
    rs.add_argument("--timeout", type=float, default=L.DEFAULT_UP_TIMEOUT, metavar="SECONDS",
                    help=f"how long to wait for it to stop, then for the cluster to be ready "
                    f"(default {L.DEFAULT_UP_TIMEOUT:.0f})")
    rs.set_defaults(func=_cluster_restart)


def _cluster_up(ns: argparse.Namespace) -> int:
    from . import launcher as L

    try:
        server_args = list(ns.server_arg)
        if ns.enable_debug_command:
            server_args += ["--enable-debug-command", "yes"]
        cluster = L.up(ns.dir, ns.nodes, ns.port, rf=ns.rf, routing=ns.routing,
                       node_timeout=ns.node_timeout, timeout=ns.timeout,
                       server_args=server_args, requirepass=ns.requirepass)
    except L.LauncherError as exc:
        print(f"respkv cluster up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("respkv cluster up: interrupted; the nodes it started were stopped", file=sys.stderr)
        return 130
    st = L.status(cluster.directory)
    if st is not None:
        print(L.format_status(st))
        print()
    print(L.connect_hint(cluster))
    return 0


def _cluster_down(ns: argparse.Namespace) -> int:
    from . import launcher as L

    try:
        stopped = L.down(ns.dir, ns.timeout)
    except L.LauncherError as exc:
        print(f"respkv cluster down: {exc}", file=sys.stderr)
        return 1
    if not stopped:
        print(f"no running cluster in {ns.dir}")
    for node in stopped:
        print(f"stopped {node.name} (pid {node.pid}, port {node.port})")
    return 0


def _cluster_status(ns: argparse.Namespace) -> int:
    from . import launcher as L

    try:
        st = L.status(ns.dir)
    except L.LauncherError as exc:
        print(f"respkv cluster status: {exc}", file=sys.stderr)
        return 1
    if st is None:
        print(f"no cluster recorded in {ns.dir} (start one with: respkv cluster up --dir {ns.dir})")
        return 1
    print(L.format_status(st))
    return 0 if st.ok else 1


def _cluster_remove(ns: argparse.Namespace) -> int:
    from . import launcher as L

    try:
        removed = L.remove(ns.dir, ns.node, ns.timeout, report=_progress_printer())
    except L.LauncherError as exc:
        print(f"respkv cluster remove: {exc}", file=sys.stderr)
        return 1
    what = removed if isinstance(removed, str) else f"{removed.name} ({removed.node_id})"
    _end_progress()
    print(f"removed {what}: every running member dropped it; a node that ran handed its keys over "
          "and was stopped; a failed node's hints go to the nodes that now replicate its keys, and "
          "anti-entropy copies its slots to them")
    return 0


def _cluster_add(ns: argparse.Namespace) -> int:
    from . import launcher as L

    try:
        added = L.add(ns.dir, ns.count, timeout=ns.timeout, wait=not ns.no_wait, report=_progress_printer())
    except L.LauncherError as exc:
        print(f"respkv cluster add: {exc}", file=sys.stderr)
        return 1
    _end_progress()
    for node in added:
        print(f"added {node.name} ({node.node_id}) on port {node.port}")
    print("its share of the keys has moved to it" if not ns.no_wait
          else "keys move to it in the background: respkv cluster status shows how far they are")
    return 0


def _cluster_restart(ns: argparse.Namespace) -> int:
    from . import launcher as L

    try:
        node = L.restart(ns.dir, ns.node, timeout=ns.timeout)
    except L.LauncherError as exc:
        print(f"respkv cluster restart: {exc}", file=sys.stderr)
        return 1
    print(f"restarted {node.name} (pid {node.pid}, port {node.port}); the cluster is ready")
    return 0


def _end_progress() -> None:
    if sys.stdout.isatty():
        print("\r\033[K", end="")


def _progress_printer():
    """Progress lines of moves: redrawn in place on a terminal, one per report otherwise."""
    if not sys.stdout.isatty():
        return lambda line: print(line, flush=True)

    def show(line: str) -> None:
        print("\r\033[K" + line, end="", flush=True)
    return show


def _kube_parser(sub) -> None:
    """``respkv kube run|ready|stop|manifests``: a StatefulSet's pods (docs/deployment.md)."""
    p = sub.add_parser("kube", help="run respkv as a Kubernetes StatefulSet (see docs/deployment.md)")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("run", help="the container's entrypoint: start this pod's node").set_defaults(func=_kube_run)
    actions.add_parser("ready", help="readiness probe: exit 0 once the node has joined").set_defaults(
        func=_kube_ready)
    actions.add_parser("stop", help="preStop hook: decommission the node if the StatefulSet no longer counts "
                       "its pod").set_defaults(func=_kube_stop)
    m = actions.add_parser("manifests", help="print the Service, RBAC and StatefulSet objects for kubectl apply")
    m.add_argument("--name", default="respkv", help="StatefulSet name (default respkv)")
    m.add_argument("--replicas", type=int, default=3, help="pods (default 3)")
    m.add_argument("--image", default="respkv:latest", help="container image (default respkv:latest)")
    m.add_argument("--namespace", default="default", help="namespace (default default)")
    m.add_argument("--storage", default="10Gi", help="volume size per pod (default 10Gi)")
    m.add_argument("--rf", type=int, default=3, help="replication factor (default 3)")
    m.set_defaults(func=_kube_manifests)


def _kube_run(ns: argparse.Namespace) -> int:
    from .launcher import kube

    kube.run()
    return 1  # run execs the node; reaching here means it could not


def _kube_ready(ns: argparse.Namespace) -> int:
    from .launcher import kube

    return 0 if kube.probe_ready() else 1


def _kube_stop(ns: argparse.Namespace) -> int:
    from .launcher import kube

    try:
        kube.stop()
    except (OSError, ValueError, kube.ReplyError) as exc:  # the node stops anyway; its volume keeps its data
        print(f"respkv kube stop: {exc}", file=sys.stderr)
        return 1
    return 0


def _kube_manifests(ns: argparse.Namespace) -> int:
    from .launcher import kube

    sys.stdout.write(kube.render(kube.manifests(ns.name, replicas=ns.replicas, image=ns.image,
                                                namespace=ns.namespace, storage=ns.storage, rf=ns.rf)))
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="respkv", description="A Dynamo-style key-value store speaking RESP.")
    sub = parser.add_subparsers(dest="command", required=True)
    _server_parser(sub)
    _cluster_parser(sub)
    _kube_parser(sub)
    ns, extra = parser.parse_known_args(argv)
    if extra and ns.command != "server":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    ns.directives = extra
    sys.exit(ns.func(ns))
