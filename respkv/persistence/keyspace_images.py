"""Journal entries of a plain keyspace (standalone nodes, and clusters without
replication): a key's value and absolute expiry, or its absence.

A ``VALUE`` entry's body is the expiry (u64 Unix ms, 0 for none) followed by the
value in its wire form (:mod:`respkv.keyspace.codec`).  Replaying an entry whose
expiry has passed removes the key: a key that expired while the node was down is
never served.  A collection's small change is logged as a ``COMMAND`` entry
instead (:mod:`.command_entries`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ..keyspace.codec import STRING_TAG, decode_value, encode_value
from .command_entries import CommandLog, command_replay, logging_table
from .entries import ABSENT, COMMAND, FLUSHED, KEY_LENGTH, KIND_AND_KEY_LENGTH, VALUE, entry

_EXPIRY = struct.Struct("<Q")
#: What follows the key in the entry of a string without expiry.
_STRING_FOREVER = _EXPIRY.pack(0) + STRING_TAG


def keyspace_image(keyspace) -> Callable[[bytes], bytes]:
    """``image(key)``: the entry that restores ``key`` as ``keyspace`` holds it now."""
    data = keyspace.data
    expires = keyspace.expires
    key_length = KEY_LENGTH.pack
    expiry = _EXPIRY.pack

    def image(key: bytes) -> bytes:
        value = data.get(key)
        if value is None:
            return entry(ABSENT, key)
        if value.__class__ is bytes:  # entry() and encode_value() of a string, in one join
            return b"".join((VALUE, key_length(len(key)), key, expiry(expires.get(key, 0)), STRING_TAG, value))
        return entry(VALUE, key, expiry(expires.get(key, 0)) + encode_value(value))

    return image


def keyspace_images(keyspace) -> Callable[[dict[bytes, bytes | None]], list[bytes]]:
    """``images(marked)``: the entries of the keys of ``marked`` (a key's entry, or
    None to image it now), in order: :func:`keyspace_image` for a whole round, with
    the common case - a string - inlined."""
    data_get = keyspace.data.get
    expires = keyspace.expires
    expiry = _EXPIRY.pack
    head = KIND_AND_KEY_LENGTH.pack
    forever = _STRING_FOREVER
    image = keyspace_image(keyspace)

    def images(marked: dict[bytes, bytes | None]) -> list[bytes]:
        payloads = []
        append = payloads.append
        for key, payload in marked.items():
            if payload is None:
                value = data_get(key)
                if value.__class__ is not bytes:
                    payload = image(key)
                elif expires and key in expires:
                    payload = b"".join((head(VALUE, len(key)), key, expiry(expires[key]), STRING_TAG, value))
                else:
                    payload = b"".join((head(VALUE, len(key)), key, forever, value))
            append(payload)
        return payloads

    return images


def keyspace_replay(keyspace, command: Callable[[bytes, bytes], bool] | None = None
                    ) -> Callable[[bytes, bytes, bytes], bool | None]:
    """``apply(kind, key, body)``: replays journal entries into ``keyspace``;
    ``command(key, body)`` replays a ``COMMAND`` entry (see
    :mod:`.command_entries`), and its False (skipped) is returned."""
    now = keyspace.clock_ms()

    def apply(kind: bytes, key: bytes, body: bytes) -> bool | None:
        if kind == VALUE:
            (expire_at,) = _EXPIRY.unpack_from(body, 0)
            if expire_at and expire_at <= now:
                keyspace.delete(key)
                return
            keyspace.set(key, decode_value(body[_EXPIRY.size :]))
            if expire_at:
                keyspace.set_deadline(key, expire_at)
        elif kind == ABSENT:
            keyspace.delete(key)
        elif kind == FLUSHED:
            keyspace.flush()
        elif kind == COMMAND and command is not None:
            return command(key, body)
        else:
            raise ValueError(f"an entry of kind {kind.decode('latin-1')!r}, which only a node with replication "
                             "writes; start this node with cluster-enabled yes and replication-factor above 1")

    return apply


def journal_plain_keyspace(node) -> None:
    """Open ``node``'s journal for its plain keyspace (no replication): values are
    imaged, small changes of collections logged as their commands (the node then
    serves with :func:`~.command_entries.logging_table`), and both replayed at
    start."""
    keyspace = node.keyspace
    journal = node.open_journal(keyspace_image(keyspace), keyspace_replay(keyspace, command_replay(node)),
                                images=keyspace_images(keyspace))
    node.add_key_observer(journal.mark)
    keyspace.on_flush = journal.mark_flushed
    keyspace.command_log = CommandLog(journal, keyspace)
    node.table = logging_table(node.table, keyspace.command_log)
