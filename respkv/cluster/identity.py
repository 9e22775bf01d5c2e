"""A node's identity: the 40-hex node id kept in its data directory.

Redis Cluster clients show and compare node ids, and the ring places a node's
tokens by its id, so the id must survive restarts: it is created once, on first
start, and read back from ``<dir>/node-id`` afterwards.  The file is written to a
temporary name and renamed, so a crash never leaves a half-written id.
"""

from __future__ import annotations

import os
import re
import secrets

NODE_ID_FILE = "node-id"
_NODE_ID = re.compile(r"[0-9a-f]{40}")


class IdentityError(RuntimeError):
    """The data directory holds something that is not a node id."""


def new_node_id() -> str:
    return secrets.token_hex(20)


def load_or_create_node_id(directory: str) -> str:
    """The node id stored in ``directory``, creating (and storing) one if absent."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, NODE_ID_FILE)
    try:
        with open(path, encoding="ascii") as f:
            node_id = f.read().strip()
    except FileNotFoundError:
        node_id = new_node_id()
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(node_id + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return node_id
    if not _NODE_ID.fullmatch(node_id):
        raise IdentityError(f"{path} does not hold a 40-hex node id")
    return node_id
