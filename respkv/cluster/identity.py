"""A node's identity: the 40-hex node id kept in its data directory, and the
cluster secret it proves membership with on the bus.

Redis Cluster clients show and compare node ids, and the ring places a node's
tokens by its id, so the id must survive restarts: it is created once, on first
start, and read back from ``<dir>/node-id`` afterwards.  The file is written to a
temporary name, synced and renamed (:func:`write_file_atomically`), so a crash
never leaves a half-written id; the cluster membership file
(:mod:`respkv.cluster.persisted`) is written the same way.
"""

from __future__ import annotations

import os
import re
import secrets

from ..persistence.files import replace_file

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
        write_line_atomically(path, node_id, 0o644)
        return node_id
    if not _NODE_ID.fullmatch(node_id):
        raise IdentityError(f"{path} does not hold a 40-hex node id")
    return node_id


# -- leaving -----------------------------------------------------------------------------

#: Written into the data directory by ``CLUSTER LEAVE``: the node restarts at ring
#: weight 0 and goes on handing its keys over (removed by ``CLUSTER RESET``).
LEAVING_FILE = "leaving"


def is_leaving(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, LEAVING_FILE))


def set_leaving(directory: str, leaving: bool) -> None:
    """Record (or clear) that the node of ``directory`` leaves the cluster."""
    path = os.path.join(directory, LEAVING_FILE)
    if leaving:
        write_line_atomically(path, "this node left its cluster's ring (CLUSTER LEAVE)", 0o644)
    elif os.path.exists(path):
        os.unlink(path)


# -- the cluster secret ----------------------------------------------------------------

#: Where a node keeps the cluster secret it generated, inside its data directory.
SECRET_FILE = "cluster-secret"


class SecretError(RuntimeError):
    """The configured cluster secret cannot be read; the message says what to do."""


def load_cluster_secret(directory: str, secret: str = "", secret_file: str = "") -> tuple[bytes, str]:
    """The cluster-bus secret and where it came from, as ``(secret, source)``.

    ``secret`` (the ``cluster-secret`` directive) wins; else the first line of
    ``secret_file`` (``cluster-secret-file``), which must exist and not be empty;
    else ``<directory>/cluster-secret``, created with a random secret (readable by
    the owner only) on first start.  A node that generated its own secret can only
    form a cluster with nodes given the same one.
    """
    if secret:
        return secret.encode(), "the cluster-secret directive"
    if secret_file:
        try:
            with open(secret_file, encoding="utf-8") as f:
                value = f.readline().strip()
        except OSError as exc:
            raise SecretError(f"cannot read cluster-secret-file {secret_file}: {exc.strerror}") from None
        if not value:
            raise SecretError(f"cluster-secret-file {secret_file} is empty: write the secret on its first line")
        return value.encode(), secret_file
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SECRET_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            value = f.readline().strip()
        if value:
            return value.encode(), path
    except FileNotFoundError:
        pass
    value = secrets.token_hex(32)
    write_line_atomically(path, value)
    return value.encode(), f"{path} (generated)"


def write_line_atomically(path: str, value: str, mode: int = 0o600) -> None:
    """Store one line in ``path`` with :func:`write_file_atomically` (created with
    ``mode``, by default readable by its owner only, as a secret must be)."""
    write_file_atomically(path, (value + "\n").encode("utf-8"), mode)


def write_file_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file
    (see :func:`respkv.persistence.files.replace_file`); private by default."""
    replace_file(path, data, mode)
