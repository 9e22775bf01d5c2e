"""Command line: ``respkv server ...`` runs one node in the foreground."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from .config import Config, ConfigError

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
    return config


async def _serve_until_signalled(config: Config) -> None:
    from .node import Node, serve_node

    node = Node(config)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await nursery.start(serve_node, node)
            async for signum in signals:
                logging.getLogger("respkv").info("received %s, shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


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
        trio.run(_serve_until_signalled, config)
    except OSError as exc:
        print(f"respkv: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="respkv", description="A Dynamo-style key-value store speaking RESP.")
    sub = parser.add_subparsers(dest="command", required=True)
    _server_parser(sub)
    ns = parser.parse_args(argv)
    sys.exit(ns.func(ns))
