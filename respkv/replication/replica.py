"""The replica side of replication: the bus operations a coordinator sends.

* ``REPL key parent record ...``: apply each record, or run each shipped command
  (for a collection changed by a deterministic one-key command, a replica that
  holds the version the command was applied to runs it too); answers the keys
  whose command could not run here, so the coordinator sends their whole records.
  The answer is an acknowledgement: it leaves only once this node's commit log
  has the records (:meth:`Node.persist_now <respkv.node.Node.persist_now>`).  A
  node whose log cannot be written answers an error instead, and refuses further
  ``REPL`` requests until it can (the coordinator counts it as failed and hints).
* ``REPLFOR node key parent record ...``: as ``REPL``, from a coordinator whose
  preferred replica ``node`` is down, to this node as its **fallback** (sloppy
  quorum): the records are applied and logged with a durable hint for ``node``
  (:mod:`~.handoff`), in the same commit, before the answer leaves.
* ``RREAD key digest ...``: per key, :data:`SAME` if this replica holds versions
  with that digest, :data:`NO_RECORD` if it holds none, else its whole record.
* ``PURGE key clock``: drop the key's tombstone if it is still exactly that one.
"""

from __future__ import annotations

from ..commands.replay import REPLAYABLE, ClientlessSession, run_replayable
from .store import RECONCILE, VersionStore
from .versions import OPERATION_PREFIX, parse_operation

REPL = b"REPL"
REPLFOR = b"REPLFOR"
RREAD = b"RREAD"
PURGE = b"PURGE"
OPERATIONS = (REPL, REPLFOR, RREAD, PURGE)

NO_RECORD = b"-"
SAME = b""

#: Commands that change a collection the same way wherever they run over the same
#: prior value (:data:`~respkv.commands.replay.REPLAYABLE`): replicas holding the
#: coordinator's prior version run the command instead of receiving the whole
#: new value.
SHIPPED_AS_COMMAND = REPLAYABLE
#: Commands of :data:`SHIPPED_AS_COMMAND` whose requests in a row on one key do
#: what one request with all their arguments after the key, in order, does
#: (``SADD k a`` then ``SADD k b`` is ``SADD k a b``): what a pipelined run of
#: them changed of a key is shipped as that one command.
MERGEABLE = frozenset({"sadd", "hset"})


def merged_operation(requests: list[list[bytes]]) -> list[bytes]:
    """One command doing what the requests of a :data:`MERGEABLE` command on one
    key (at position 1) do in order."""
    if len(requests) == 1:
        return requests[0]
    merged = list(requests[0])
    for args in requests[1:]:
        merged += args[2:]
    return merged


class ReplicaRefused(Exception):
    """This replica cannot take writes now (its commit log cannot be written)."""


class ReplicaSide:
    """Serves the replication operations of the bus for one node's store."""

    def __init__(self, node, store: VersionStore, hint=None) -> None:
        self.node = node
        self.store = store
        #: ``hint(node_id, keys)``: stores durable hints (for REPLFOR).
        self._hint = hint
        #: What shipped commands run as (made when the first one arrives).
        self._session: ClientlessSession | None = None

    def handle(self, peer_id: str, op: bytes, args: list[bytes]) -> list[bytes]:
        """Serve one replication bus request (see the module doc)."""
        store = self.store
        target = None
        if op == REPLFOR:
            if not args or self._hint is None:
                raise ValueError("REPLFOR needs the node it stands in for")
            target = args[0].decode()
            args = args[1:]
            op = REPL
        if op == REPL:
            refusal = self.node.write_refusal
            if refusal is not None:
                raise ReplicaRefused(refusal)
            # Answers the keys whose shipped command could not run here (this
            # replica does not hold the version it applies to): the coordinator
            # sends their whole records instead.
            if len(args) % 3:
                raise ValueError("REPL needs key, parent, record triples")
            apply_shipped = store.apply_shipped
            missing = []
            for i in range(0, len(args), 3):
                blob = args[i + 2]
                if blob.startswith(OPERATION_PREFIX):
                    if not self.run_shipped(args[i], args[i + 1], blob):
                        missing.append(args[i])
                else:
                    apply_shipped(args[i], args[i + 1], blob)
            if target is not None:
                self._hint(target, args[0::3])
            self.node.persist_now()  # raises if the log cannot take them: no answer
            return missing
        if len(args) % 2:
            raise ValueError(f"{op.decode()} needs key/value pairs")
        if op == RREAD:
            answers = []
            for i in range(0, len(args), 2):
                key = args[i]
                if store.holds(key, args[i + 1]):
                    answers.append(SAME)
                elif key not in store.records:
                    answers.append(NO_RECORD)
                else:
                    answers.append(store.wire_record(key))
            return answers
        if op == PURGE:
            store.purge(args[0], args[1])
            return []
        raise ValueError(f"unknown replication operation {op!r}")

    def run_shipped(self, key: bytes, parent: bytes, blob: bytes) -> bool:
        """Run a command a coordinator shipped for ``key`` over the versions named
        ``parent`` (or the commit log holds, at start); False if this replica
        does not hold those versions."""
        if not self.store.holds(key, parent):
            return False
        kept, command = parse_operation(blob)
        if self._session is None:
            self._session = ClientlessSession(self.node)
        if not run_replayable(self.node.table, self._session, key, command):
            return False  # cannot happen on the same prior value; recover with the record
        self.store.operation_applied(key, parent, blob, kept, command)
        return True


def reconcile_args(store: VersionStore, keys) -> list[bytes]:
    """``REPL`` arguments shipping the whole current records of ``keys`` (those
    with a record), to reconcile with what the receiver holds."""
    args: list[bytes] = []
    for key in keys:
        record = store.wire_record(key)
        if record is not None:
            args.append(key)
            args.append(RECONCILE)
            args.append(record)
    return args
