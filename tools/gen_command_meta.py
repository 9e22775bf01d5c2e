"""Regenerate ``respkv/commands/redis_commands.json`` from a reference redis-server.

Stock clients route and validate commands by what ``COMMAND`` reports: arity, flags,
key positions, key specs, ACL categories and tips.  Those are protocol facts of
Redis 7.0, so we record them once from a real ``redis-server`` instead of typing them
by hand.  Descriptive prose (key-spec notes, command docs) is deliberately dropped;
respkv writes its own summaries.

Usage: ``python -m tools.gen_command_meta`` (starts and stops a redis-server).
"""

from __future__ import annotations

import json
import pathlib
import socket

import hiredis

from tools.procs import start_redis_server

OUT = pathlib.Path(__file__).resolve().parent.parent / "respkv" / "commands" / "redis_commands.json"


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _spec(raw: dict) -> dict:
    spec = {}
    for k, v in raw.items():
        k = _text(k)
        if k == "notes":
            continue
        if k == "flags":
            spec[k] = [_text(f) for f in v]
        elif isinstance(v, dict):
            spec[k] = {_text(a): (_spec(b) if isinstance(b, dict) else _text(b)) for a, b in v.items()}
        else:
            spec[k] = _text(v)
    return spec


def _command(info: list) -> dict:
    name, arity, flags, first, last, step, acl, tips, key_specs, subs = info
    return {
        "arity": arity,
        "flags": [_text(f) for f in flags],
        "first_key": first,
        "last_key": last,
        "step": step,
        "acl_categories": [_text(c) for c in acl],
        "tips": [_text(t) for t in tips],
        "key_specs": [_spec(s) for s in key_specs],
        "subcommands": {_text(s[0]).split("|", 1)[1]: _command(s) for s in subs},
    }


def _fetch(port: int) -> list:
    reader = hiredis.Reader()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"HELLO 3\r\nCOMMAND\r\n")
        replies = []
        while len(replies) < 2:
            reader.feed(sock.recv(1 << 20))
            while (r := reader.gets()) is not False:
                replies.append(r)
    return replies[1]


def main() -> None:
    with start_redis_server() as server:
        commands = _fetch(server.port)
    table = {_text(c[0]): _command(c) for c in commands}
    OUT.write_text(json.dumps(dict(sorted(table.items())), indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {len(table)} commands to {OUT.name}")


if __name__ == "__main__":
    main()
