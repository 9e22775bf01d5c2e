"""The dispatcher: what a session may run without the general checks, composed once.

Theory of operation
-------------------
Every request can take the general path (:meth:`ClientSession.execute`: table
lookup, arity, ACL-like gates, cluster routing, replication).  Most requests of a
busy node are simple enough to skip most of it — a known synchronous command with
the right arity, on an authenticated connection outside ``MULTI``, naming no key
or one key of a slot this node serves — and pipelined runs of the hottest ones
(``GET``, ``SET``) are served by one call for the whole run.

:class:`Dispatcher` builds that **fast path** once per (command table, cluster
topology snapshot, replication on or off) and hands it to sessions as a
:class:`FastPath`; the session gate adds the per-connection flag
(``session.fast``).  This is the one place where the cluster's rules
(:func:`~respkv.cluster.routing.fast_spec`: which commands qualify; which slots
are served) and replication's run handlers are composed, and
:func:`run_extent` is the one scan that finds how far a run of pipelined
requests goes: same command, well formed, key of a served slot, and — with
replication — one placement, so that one reply slot and one replica request
answer for the whole run.
"""

from __future__ import annotations

from collections.abc import Callable

from ..cluster.routing import NOTHING_SERVED, fast_spec, served_slots
from ..commands.table import CommandSpec
from ..keyspace.slots import key_slot


class FastPath:
    """What the session's fast path may run, for one table and topology.

    ``specs``: name → spec of commands the per-request gate may run.  ``served``:
    per-slot bytes, true where a one-key command may run here at once (None in
    standalone mode: every slot).  ``runs``: name → ``run(session, batch, i, out)
    -> end`` serving the run of pipelined requests from ``batch[i]``.
    """

    __slots__ = ("runs", "served", "specs")

    def __init__(self, specs: dict, served, runs: dict) -> None:
        self.specs = specs
        self.served = served
        self.runs = runs


def run_extent(batch, i: int, position: int, served, group: Callable | None = None) -> tuple[int, object]:
    """``(end, group)``: the run ``batch[i:end]`` of requests for ``batch[i][0]``
    whose key (at ``position``) is in a slot ``served`` here; with ``group``
    (slot → placement), also of ``batch[i]``'s placement, which is returned.

    Requests may be malformed (the reader's fast path leaves that to its users,
    see :func:`respkv.protocol.reader.well_formed`): a run ends at the first one
    that is not a list with a ``bytes`` key there; the run's own handler checks
    the rest of each request's shape.
    """
    name = batch[i][0]
    count = len(batch)
    end = i
    first = None
    last_key = None
    while end < count:
        args = batch[end]
        if args.__class__ is not list or len(args) <= position or args[0] != name:
            break
        key = args[position]
        if key.__class__ is not bytes:
            break
        if key != last_key:  # pipelines often repeat one key: look it up once
            slot = key_slot(key)
            if not served[slot]:
                break
            if group is not None:
                where = group(slot)
                if first is None:
                    first = where
                elif where != first:
                    break
            last_key = key
        end += 1
    return end, first


def bounded_run(run_handler: Callable, position: int, served) -> Callable:
    """``run_handler`` (a plain run) limited to keys of slots ``served`` here.

    Runs of one are left to the per-request gate, which is cheaper for them.
    """

    def run(session, batch, i, out):
        end, _ = run_extent(batch, i, position, served)
        if end <= i + 1:
            return i
        if end == len(batch):
            return run_handler(session, batch, i, out)
        return i + run_handler(session, batch[i:end], 0, out)

    run.__doc__ = f"{run_handler.__name__}, stopped at the first key not served here."
    return run


def replicated_run_for(replicated_run: Callable, position: int, served, placement: Callable) -> Callable:
    """A replicated run handler given the run of one placement that it serves."""

    def run(session, batch, i, out):
        end, where = run_extent(batch, i, position, served, placement)
        if end == i:
            return i
        return replicated_run(session, batch, i, end, out, where)

    run.__doc__ = f"{replicated_run.__doc__}, for one placement."
    return run


class Dispatcher:
    """Builds and caches the :class:`FastPath` of one node (see the module doc)."""

    def __init__(self, node) -> None:
        self.node = node
        self._built_for: tuple = ()
        self._path: FastPath | None = None

    def fast_path(self) -> FastPath:
        """The fast path for the node's current table and topology."""
        node = self.node
        cluster = node.cluster
        topology = cluster.topology if cluster is not None else None
        built = self._built_for
        if built and built[0] is node.table and built[1] is topology and built[2] is node.replication:
            return self._path
        self._path = self._build(node.table, cluster, node.replication)
        self._built_for = (node.table, topology, node.replication)
        return self._path

    @staticmethod
    def _build(table, cluster, replication) -> FastPath:
        plain = table.plain_specs
        if cluster is None:
            runs = {name: spec.run_handler for name, spec in plain.items() if spec.run_handler is not None}
            return FastPath(plain, None, runs)
        specs: dict[bytes, CommandSpec] = {}
        runs = {}
        here = served_slots(cluster)  # nothing while the cluster is down
        converted: dict[int, CommandSpec | None] = {}  # each spec is listed under two names
        for name, spec in plain.items():
            if id(spec) not in converted:
                converted[id(spec)] = fast_spec(spec)
            fast = converted[id(spec)]
            if fast is None:
                continue
            specs[name] = fast
            if fast.run_handler is None or fast.first_key <= 0:
                continue
            if replication is not None:
                runs[name] = replicated_run_for(replication.run_for(fast), fast.first_key, here, replication.placement)
            else:
                runs[name] = bounded_run(fast.run_handler, fast.first_key, here)
        # With replication every other keyed request takes the coordinator's general path.
        return FastPath(specs, here if replication is None else NOTHING_SERVED, runs)
