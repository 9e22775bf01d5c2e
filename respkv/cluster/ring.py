"""The consistent-hash ring: which nodes hold each of the 16384 hash slots.

Theory of operation
-------------------
The ring is the 64-bit integer circle ``[0, 2**64)``.  Every member node places
``vnodes * weight`` *tokens* on it, token ``i`` of node ``n`` sitting at
``CityHash64(b"<n>#<i>")``, so a node's tokens depend on nothing but its own id and
any two nodes that know the same members compute the same ring.  Each hash slot sits
at a fixed position, ``slot * 2**64 // 16384`` (that is ``slot << 50``), and belongs
to the first token at or clockwise after that position, wrapping past ``2**64 - 1``
to the smallest token.  A slot's **preference list** for replication factor RF is
the first RF *distinct* nodes met walking clockwise from the slot's position; its
first entry is the slot's **primary** (``owner``), the rest its replicas.  When some
of them are down, the first live one **coordinates** requests for the slot, and each
down node's writes go to a **fallback**: the next live node clockwise beyond the
preference list, which keeps them as hints until the node returns (Dynamo's sloppy
quorum).

Why evenly spaced slot positions: the share of slots a node gets then tracks the
share of the circle its tokens cover to within one slot per token arc, whereas
hashing each slot to a random position adds sampling noise on top (measured over 40
random 10-node clusters at 256 tokens per node, 11 exceeded a 1.25 max/min ratio with
hashed positions against 4 with even spacing).  Even spacing also keeps neighbouring
slots on the same token, so ownership comes in contiguous runs and ``CLUSTER SLOTS``
lists one range per token arc rather than nearly one per slot.

Why :data:`DEFAULT_VNODES` is 1024 rather than 256: the circle share of a node with
``t`` random tokens varies by about ``1/sqrt(t)``, so with 256 tokens the most and
least loaded of ten equal nodes differ by about 20% on average and by more than 25%
for roughly one cluster in seven (over 100 random 10-node clusters: worst 1.37, 15
above 1.25).  With 1024 tokens the worst of 300 random 10-node clusters was 1.20.
The cost is more, shorter ranges: a 10-node ring has about 6900 owner runs (2100 at
256 tokens), which is the length of ``CLUSTER SLOTS``.

A :class:`Ring` is an immutable value (compare riak_core's ring vs. its manager):
it is built from ``{node_id: weight}`` and ``vnodes``, compares and hashes by those
alone, and changes by building a new ring (:meth:`Ring.with_node`,
:meth:`Ring.without_node`).  Derived tables are computed once per ring: the primary
of every slot at construction, the preference lists of every slot for a given RF on
first use (call :meth:`Ring.preference_lists` when installing a ring to keep that
work off the request path), so a request's lookup is two indexings.  :func:`moves`
plans a change of ring as the slots whose primary changes; :func:`ranges` turns a
per-slot table into contiguous runs for ``CLUSTER SLOTS`` and ``CLUSTER NODES``.
Nothing here does I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from cityhash import CityHash64

from ..keyspace.slots import SLOT_COUNT

#: Tokens each node places on the ring per unit of weight (see the module docstring).
DEFAULT_VNODES = 1024

#: Distance between the ring positions of consecutive slots (``2**64 // 16384``).
SLOT_SPACING = 2**64 // SLOT_COUNT

#: Something that says which nodes are up: a predicate or a collection of live ids.
Liveness = Callable[[str], bool] | Collection[str]

_Owner = TypeVar("_Owner", bound=Hashable)


def slot_position(slot: int) -> int:
    """The fixed ring position of ``slot``."""
    return slot * SLOT_SPACING


@lru_cache(maxsize=4096)
def node_tokens(node_id: str, count: int) -> tuple[int, ...]:
    """The ring positions of the first ``count`` tokens of ``node_id``.

    Cached because rings are rebuilt whole on every membership change while each
    node's tokens stay the same.
    """
    prefix = node_id.encode()
    return tuple([CityHash64(b"%s#%d" % (prefix, i)) for i in range(count)])


def _is_alive(live: Liveness) -> Callable[[str], bool]:
    return live if callable(live) else live.__contains__


class Ring:
    """An immutable consistent-hash ring over a set of weighted member nodes.

    ``members`` maps node ids (40-hex strings in a cluster) to positive integer
    weights; a node gets ``vnodes * weight`` tokens.  Two rings are equal, and hash
    alike, exactly when their members, weights and ``vnodes`` are; equal rings make
    identical placements whatever order the members were given in.
    """

    __slots__ = (
        "_members",
        "_vnodes",
        "_key",
        "_hash",
        "_token_nodes",
        "_slot_token",
        "_owners",
        "_tables",
    )

    def __init__(self, members: Mapping[str, int] | None = None, vnodes: int = DEFAULT_VNODES):
        if not isinstance(vnodes, int) or vnodes < 1:
            raise ValueError(f"vnodes must be a positive integer, not {vnodes!r}")
        members = dict(members or {})
        for node_id, weight in members.items():
            if not isinstance(node_id, str) or not node_id:
                raise TypeError(f"node ids must be non-empty strings, not {node_id!r}")
            if not isinstance(weight, int) or weight < 1:
                raise ValueError(f"weight of {node_id} must be a positive integer, not {weight!r}")
        self._members = dict(sorted(members.items()))
        self._vnodes = vnodes
        self._key = (frozenset(self._members.items()), vnodes)
        self._hash = hash(self._key)

        # Sorting (position, node) pairs breaks the (astronomically unlikely) tie of
        # two tokens at one position by node id, so placement stays deterministic.
        placed = sorted(
            (position, node_id)
            for node_id, weight in self._members.items()
            for position in node_tokens(node_id, vnodes * weight)
        )
        positions = [position for position, _ in placed]
        self._token_nodes: tuple[str, ...] = tuple([node_id for _, node_id in placed])
        count = len(positions)
        if count:
            # bisect_left finds the first token at or after the slot's position;
            # the index ``count`` means "past the top", which wraps to token 0.
            self._slot_token = tuple(
                [bisect_left(positions, slot * SLOT_SPACING) % count for slot in range(SLOT_COUNT)]
            )
            self._owners: tuple[str | None, ...] = tuple(
                [self._token_nodes[j] for j in self._slot_token]
            )
        else:
            self._slot_token = ()
            self._owners = (None,) * SLOT_COUNT
        self._tables: dict[int, tuple[tuple[str, ...], ...]] = {}

    # -- the value ---------------------------------------------------------------

    @property
    def members(self) -> Mapping[str, int]:
        """Read-only ``{node_id: weight}``, in node id order."""
        return MappingProxyType(self._members)

    @property
    def vnodes(self) -> int:
        """Tokens per unit of weight."""
        return self._vnodes

    @property
    def token_count(self) -> int:
        """Total tokens on the ring."""
        return len(self._token_nodes)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._members

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Ring({self._members!r}, vnodes={self._vnodes})"

    def with_node(self, node_id: str, weight: int = 1) -> Ring:
        """A ring with ``node_id`` added, or with its weight changed if a member."""
        members = dict(self._members)
        members[node_id] = weight
        return Ring(members, self._vnodes)

    def without_node(self, node_id: str) -> Ring:
        """A ring without ``node_id``; ``KeyError`` if it is not a member."""
        members = dict(self._members)
        del members[node_id]
        return Ring(members, self._vnodes)

    # -- placement ---------------------------------------------------------------

    def owner(self, slot: int) -> str | None:
        """The primary of ``slot``: the first node of its preference list.

        None when the ring has no members.
        """
        if not 0 <= slot < SLOT_COUNT:
            raise IndexError(f"slot {slot} out of range")
        return self._owners[slot]

    def owners(self) -> tuple[str | None, ...]:
        """The primary of every slot, indexed by slot."""
        return self._owners

    def preference_list(self, slot: int, rf: int) -> tuple[str, ...]:
        """The first ``rf`` distinct nodes clockwise from ``slot``'s position.

        Shorter than ``rf`` only when the ring has fewer members (empty for an empty
        ring).  The first call for a given ``rf`` builds the table for every slot.
        """
        if not 0 <= slot < SLOT_COUNT:
            raise IndexError(f"slot {slot} out of range")
        table = self._tables.get(rf)
        if table is None:
            table = self.preference_lists(rf)
        return table[slot]

    def preference_lists(self, rf: int) -> tuple[tuple[str, ...], ...]:
        """The preference list of every slot for ``rf``, indexed by slot.

        Lists that are equal are the same tuple object, so the table costs one
        pointer per slot plus one tuple per distinct list.
        """
        table = self._tables.get(rf)
        if table is not None:
            return table
        if not isinstance(rf, int) or rf < 1:
            raise ValueError(f"replication factor must be a positive integer, not {rf!r}")
        effective = min(rf, len(self._members))
        table = self._tables.get(effective)
        if table is None:
            table = self._build_table(effective)
            self._tables[effective] = table
        self._tables[rf] = table
        return table

    def _build_table(self, rf: int) -> tuple[tuple[str, ...], ...]:
        if rf == 0:
            return ((),) * SLOT_COUNT
        by_token: dict[int, tuple[str, ...]] = {}
        shared: dict[tuple[str, ...], tuple[str, ...]] = {}
        for j in set(self._slot_token):
            walk = self._walk_from(j)
            found = tuple([next(walk) for _ in range(rf)])
            by_token[j] = shared.setdefault(found, found)
        return tuple([by_token[j] for j in self._slot_token])

    def _walk_from(self, token: int) -> Iterator[str]:
        """Distinct nodes in clockwise order starting at token index ``token``."""
        nodes = self._token_nodes
        count = len(nodes)
        remaining = len(self._members)
        seen: set[str] = set()
        j = token
        while remaining:
            node = nodes[j]
            if node not in seen:
                seen.add(node)
                remaining -= 1
                yield node
            j += 1
            if j == count:
                j = 0

    def walk(self, slot: int) -> Iterator[str]:
        """Every member once, in clockwise order from ``slot``'s position.

        The preference list for any RF is a prefix of this walk; the nodes after it
        are the slot's fallbacks, nearest first.
        """
        if not 0 <= slot < SLOT_COUNT:
            raise IndexError(f"slot {slot} out of range")
        if not self._members:
            return iter(())
        return self._walk_from(self._slot_token[slot])

    def slots_of(self, node_id: str, rf: int = 1) -> tuple[int, ...]:
        """The slots whose ``rf`` preference list includes ``node_id``, ascending.

        With the default ``rf`` of 1, the slots ``node_id`` is primary for.
        """
        if rf == 1:
            return tuple([slot for slot, owner in enumerate(self._owners) if owner == node_id])
        return tuple(
            [slot for slot, nodes in enumerate(self.preference_lists(rf)) if node_id in nodes]
        )

    def slot_counts(self, rf: int = 1) -> dict[str, int]:
        """How many slots each member holds among its first ``rf`` replicas.

        Every member appears, with 0 if it holds none.
        """
        counts = dict.fromkeys(self._members, 0)
        if rf == 1:
            for owner in self._owners:
                if owner is not None:
                    counts[owner] += 1
        else:
            for nodes in self.preference_lists(rf):
                for node_id in nodes:
                    counts[node_id] += 1
        return counts

    # -- failures ----------------------------------------------------------------

    def coordinator(self, slot: int, rf: int, live: Liveness) -> str | None:
        """The first live node of ``slot``'s preference list; None if all are down.

        ``live`` is a predicate on node ids or a collection of the live ones.
        """
        alive = _is_alive(live)
        for node_id in self.preference_list(slot, rf):
            if alive(node_id):
                return node_id
        return None

    def fallbacks(self, slot: int, rf: int, live: Liveness) -> dict[str, str | None]:
        """Where writes for each down node of ``slot``'s preference list go instead.

        Maps every down node of the preference list, in preference order, to a live
        node beyond the list: the first down node to the nearest such node clockwise,
        the second to the next, and so on, so no fallback stands in for two nodes.
        A down node maps to None when the ring has too few live nodes outside the
        preference list.  Empty when the whole preference list is live.
        """
        alive = _is_alive(live)
        preferred = self.preference_list(slot, rf)
        down = [node_id for node_id in preferred if not alive(node_id)]
        if not down:
            return {}
        walk = self.walk(slot)
        for _ in preferred:
            next(walk)
        beyond = (node_id for node_id in walk if alive(node_id))
        return {node_id: next(beyond, None) for node_id in down}


class Move(NamedTuple):
    """A slot whose primary changes from ``source`` to ``target``.

    Either side is None when the ring on that side has no members.
    """

    slot: int
    source: str | None
    target: str | None


def moves(old: Ring, new: Ring) -> tuple[Move, ...]:
    """The slots whose primary differs between ``old`` and ``new``, by slot."""
    before = old.owners()
    after = new.owners()
    return tuple(
        [
            Move(slot, source, target)
            for slot, (source, target) in enumerate(zip(before, after))
            if source != target
        ]
    )


def ranges(owner_of_slot: Sequence[_Owner]) -> list[tuple[int, int, _Owner]]:
    """Runs of consecutive slots with equal owners, as ``(start, end, owner)``.

    ``end`` is inclusive, as in ``CLUSTER SLOTS``.  The owner may be anything
    comparable: a node id for ``CLUSTER NODES``, a whole preference list for
    ``CLUSTER SLOTS`` (whose ranges must also split where replicas change), or None
    for unserved slots, which get ranges like any other owner.
    """
    runs: list[tuple[int, int, _Owner]] = []
    if not owner_of_slot:
        return runs
    start = 0
    current = owner_of_slot[0]
    for slot in range(1, len(owner_of_slot)):
        owner = owner_of_slot[slot]
        if owner != current:
            runs.append((start, slot - 1, current))
            start = slot
            current = owner
    runs.append((start, len(owner_of_slot) - 1, current))
    return runs
