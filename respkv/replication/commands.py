"""Replication commands: SIBLINGS, RESOLVE, CONSISTENCY, and BUSFAULT for fault tests.

These are respkv's own commands (Redis has none of them), so their metadata for
``COMMAND`` is declared here: SIBLINGS and RESOLVE name their key at position 1, so
cluster clients (redis-py's ``RedisCluster``) route them like ``GET`` and ``SET``.

* ``SIBLINGS key``: the key's causal context and every version kept of it.  The
  reply is a two-element array: the context (hex, to pass to ``RESOLVE``) and the
  siblings, oldest first, each a map of ``value``, ``type``, ``clock`` (an array of
  ``[node-id, counter, timestamp-ms]``), ``timestamp``, ``tombstone``, ``expireat``
  (-1 for none) and ``winner`` (1 for the one ``GET`` shows).  Without replication
  a key has at most one version and an empty context.
* ``RESOLVE key context [value]``: write ``value`` (or delete the key, without
  one) superseding exactly the versions ``context`` has seen: siblings written
  since the client read the context stay.  Without replication it is SET / DEL.
* ``CONSISTENCY [R r] [W w] [SLOPPY yes|no] | DEFAULT``: this connection's read and
  write quorums, and whether its writes take a sloppy quorum; without arguments,
  the N/R/W and sloppiness now in force for it.
* ``BUSFAULT CUT node-id ... | HEAL [node-id ...] | LIST``: cut or restore this
  node's cluster-bus links, for partition tests (``tools/faults.py`` drives it).
  A fault-injection command, so guarded like Redis's ``DEBUG``: refused unless the
  node runs with ``enable-debug-command yes``, or ``local`` and the client connects
  from a loopback address.  The session checks this before authentication and
  before queueing in MULTI (:data:`PROTECTED_COMMANDS`, :func:`debug_command_refusal`),
  as Redis does; the handler checks again for the session's fast path.
"""

from __future__ import annotations

from ..commands.table import CommandError, command
from ..errors import SYNTAX
from ..keyspace.codec import decode_value, encode_value
from ..keyspace.numbers import parse_int
from ..keyspace.values import type_name
from ..protocol import reply
from . import vclock
from .convergent import split_value
from .quorum import effective, requested, sloppy
from .versions import Version, winner

_KEY_SPEC_RO = {
    "flags": ["RO", "access"],
    "begin_search": {"type": "index", "spec": {"index": 1}},
    "find_keys": {"type": "range", "spec": {"lastkey": 0, "keystep": 1, "limit": 0}},
}
_KEY_SPEC_OW = {
    "flags": ["OW", "update"],
    "begin_search": {"type": "index", "spec": {"index": 1}},
    "find_keys": {"type": "range", "spec": {"lastkey": 0, "keystep": 1, "limit": 0}},
}
_MAX_QUORUM = 16


# -- SIBLINGS ------------------------------------------------------------------------------


def _render_value(proto, value) -> bytes:
    """A decoded value as the reply its type's read command would give."""
    if value.__class__ is bytes:
        return reply.bulk(value)
    kind = type_name(value)
    if kind == b"list":
        return reply.bulk_array(value)
    if kind == b"hash":
        return proto.map([(reply.bulk(f), reply.bulk(v)) for f, v in value.items()])
    if kind == b"set":
        return proto.set([reply.bulk(m) for m in value])
    # sorted set: [member, score] pairs in order, as ZRANGE ... WITHSCORES in RESP3
    return reply.array([reply.array([reply.bulk(m), proto.double(s)]) for s, m in value])


def _sibling(proto, version, is_winner: bool, now_ms: int) -> bytes:
    value = None
    if version.live(now_ms) and version.value:
        value = decode_value(split_value(version.value)[0])
    clock = vclock.decode(version.clock)
    fields = [
        (reply.bulk(b"value"), proto.null if value is None else _render_value(proto, value)),
        (reply.bulk(b"type"), reply.bulk(b"none" if value is None else type_name(value))),
        (
            reply.bulk(b"clock"),
            reply.array(
                [
                    reply.array([reply.bulk(actor.hex().encode()), reply.integer(count), reply.integer(stamp)])
                    for actor, count, stamp in clock
                ]
            ),
        ),
        (reply.bulk(b"timestamp"), reply.integer(version.stamp)),
        (reply.bulk(b"tombstone"), reply.integer(int(version.tombstone))),
        (reply.bulk(b"expireat"), reply.integer(version.expire_at or -1)),
        (reply.bulk(b"winner"), reply.integer(int(is_winner))),
    ]
    return proto.map(fields)


@command(
    "siblings",
    "Returns the causal context and every concurrent version (sibling) of a key.",
    group="generic",
    since="respkv 0.5",
    arity=2,
    flags=("readonly",),
    keys=(1, 1, 1),
    acl_categories=("@read", "@keyspace", "@slow"),
    key_specs=(_KEY_SPEC_RO,),
)
def siblings(s, args):
    key = args[1]
    proto = s.proto
    coordinator = s.node.replication
    now = s.ks.clock_ms()
    if coordinator is None:
        value = s.ks.get(key)
        if value is None:
            return reply.array([reply.bulk(b""), reply.array([])])
        version = Version(b"", 0, b"", False, s.ks.deadline(key) or 0, encode_value(value))
        return reply.array([reply.bulk(b""), reply.array([_sibling(proto, version, True, now)])])
    s.ks.get(key)  # a read of the key, as GET is (making its record is not one)
    record = coordinator.store.full_record(key)
    if record is None:
        return reply.array([reply.bulk(b""), reply.array([])])
    best = winner(record)
    context = vclock.encode(coordinator.store.causal_context(key)).hex().encode()
    return reply.array([reply.bulk(context), reply.array([_sibling(proto, v, v is best, now) for v in record])])


# -- RESOLVE -------------------------------------------------------------------------------


def _parse_context(text: bytes) -> vclock.VClock:
    try:
        return vclock.decode(bytes.fromhex(text.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        raise CommandError("ERR invalid causal context (pass the context SIBLINGS returned)") from None


@command(
    "resolve",
    "Writes a value (or deletes the key) superseding exactly the versions of a causal context.",
    group="generic",
    since="respkv 0.5",
    arity=-3,
    flags=("write", "denyoom"),
    keys=(1, 1, 1),
    acl_categories=("@write", "@keyspace", "@slow"),
    key_specs=(_KEY_SPEC_OW,),
)
def resolve(s, args):
    if len(args) > 4:
        raise CommandError(SYNTAX)
    key = args[1]
    seen = _parse_context(args[2])
    ks = s.ks
    coordinator = s.node.replication
    if coordinator is not None:
        coordinator.store.dematerialize(key)
        coordinator.contexts[key] = seen
    if len(args) == 4:
        ks.set(key, args[3])
    elif not ks.delete(key):
        ks.signal_modified(key)  # a tombstone may still supersede siblings
    return reply.OK


# -- CONSISTENCY ---------------------------------------------------------------------------


def _quorum_arg(value: bytes) -> int:
    n = parse_int(value)
    if n is None or not 1 <= n <= _MAX_QUORUM:
        raise CommandError(f"ERR R and W must be integers between 1 and {_MAX_QUORUM}")
    return n


@command(
    "consistency",
    "Sets or shows this connection's read and write quorums (R and W) and whether its writes take a sloppy quorum.",
    group="connection",
    since="respkv 0.5",
    arity=-1,
    flags=("fast", "stale", "loading"),
    keys=(0, 0, 0),
    acl_categories=("@connection", "@fast"),
    key_specs=(),
)
def consistency(s, args):
    config = s.node.config
    if len(args) == 1:
        coordinator = s.node.replication
        if coordinator is not None:
            q = coordinator.quorums(s)
        else:
            r, w = requested(config, s.consistency)
            q = effective(config["replication-factor"], config["replication-factor"], r, w)
        return s.proto.map(
            [(reply.bulk(b"n"), reply.integer(q.n)), (reply.bulk(b"r"), reply.integer(q.r)), (reply.bulk(b"w"), reply.integer(q.w)),
             (reply.bulk(b"sloppy"), reply.integer(int(sloppy(config, s.consistency))))]
        )
    if len(args) == 2 and args[1].upper() == b"DEFAULT":
        s.consistency = None
        return reply.OK
    r, w = requested(config, s.consistency)
    loose = s.consistency[2] if s.consistency and len(s.consistency) > 2 else None
    i = 1
    given = False
    while i < len(args):
        option = args[i].upper()
        if option not in (b"R", b"W", b"SLOPPY") or i + 1 >= len(args):
            raise CommandError(SYNTAX)
        if option == b"R":
            r = _quorum_arg(args[i + 1])
        elif option == b"W":
            w = _quorum_arg(args[i + 1])
        else:
            value = args[i + 1].lower()
            if value not in (b"yes", b"no"):
                raise CommandError("ERR SLOPPY must be yes or no")
            loose = value == b"yes"
        given = True
        i += 2
    if not given:
        raise CommandError(SYNTAX)
    s.consistency = (r, w) if loose is None else (r, w, loose)
    return reply.OK


# -- BUSFAULT ------------------------------------------------------------------------------

#: Commands that ``enable-debug-command`` guards (Redis: DEBUG).
PROTECTED_COMMANDS = frozenset({"busfault"})


def debug_command_refusal(s, name: str = "BUSFAULT") -> str | None:
    """Redis 7.0's error for ``name`` when ``enable-debug-command`` does not allow this
    client (``no``; ``local`` and not a loopback client), else None."""
    allowed = s.node.config["enable-debug-command"]
    if allowed == "yes" or (allowed == "local" and getattr(s, "local", False)):
        return None
    return (
        f'ERR {name} command not allowed. If the enable-debug-command option is set to "local", '
        "you can run it from a local connection, otherwise you need to set this option in the "
        "configuration file, and then restart the server."
    )


@command(
    "busfault",
    "Cuts or heals this node's cluster-bus links to other nodes (fault injection for tests).",
    group="cluster",
    since="respkv 0.5",
    arity=-2,
    flags=("admin", "noscript", "stale"),
    keys=(0, 0, 0),
    acl_categories=("@admin", "@slow", "@dangerous"),
    key_specs=(),
)
def busfault(s, args):
    refusal = debug_command_refusal(s)
    if refusal is not None:
        raise CommandError(refusal)
    bus = s.node.cluster_bus
    if bus is None:
        raise CommandError("ERR This instance has cluster support disabled")
    action = args[1].upper()
    ids = [a.decode("latin-1") for a in args[2:]]
    if action == b"CUT" and ids:
        bus.cut(ids)
    elif action == b"HEAL":
        bus.heal(ids or None)
    elif action == b"LIST" and not ids:
        return reply.bulk_array(sorted(p.encode() for p in bus.cut_peers))
    else:
        raise CommandError(SYNTAX)
    return reply.OK
