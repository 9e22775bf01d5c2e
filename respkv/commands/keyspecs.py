"""The key-spec interpreter: where the keys of a request are, by its command's spec.

Theory of operation
-------------------
A :class:`~respkv.commands.table.CommandSpec` says where a command's keys are in
two ways, both from Redis 7.0: the legacy ``first_key``/``last_key``/``step``
triple, exact for commands whose keys sit at fixed positions, and *key specs*
(``begin_search`` by index or keyword, then ``find_keys`` by range or by a key
count), which also describe commands whose keys move with their arguments
(``movablekeys``: ZUNIONSTORE, LMPOP, SORT ... STORE, ...).

:func:`command_keys` finds keys the way Redis's ``COMMAND GETKEYS`` does: from the
key specs when none has variable flags and all of them apply to the arguments,
else through a per-command key finder (:data:`_KEY_FINDERS`) for the commands whose
keys or flags depend on their arguments.  :func:`key_positions` and
:func:`request_keys` are the cheap forms the request path uses: the legacy triple
for fixed keys, the full interpreter only for movable ones.  ``COMMAND GETKEYS``,
cluster routing (which slot a request touches) and the replication coordinator
(which keys a request versions) all use this one interpreter.
"""

from __future__ import annotations

from ..keyspace.numbers import parse_int
from .table import CommandSpec

#: Flags of a key found without key specs (commands registered with first/last/step only).
_LEGACY_READ_FLAGS = ("RO", "access")
_LEGACY_WRITE_FLAGS = ("RW", "access", "update")


class _InvalidSpec(Exception):
    """A key spec does not apply to these arguments (Redis then tries its key finder)."""


def _keys_by_spec(ks: dict, argv: list[bytes]) -> list[int]:
    argc = len(argv)
    begin, find = ks["begin_search"], ks["find_keys"]
    if begin["type"] == "index":
        first = begin["spec"]["index"]
    elif begin["type"] == "keyword":
        keyword = begin["spec"]["keyword"].encode().lower()
        start = begin["spec"]["startfrom"]
        if start > 0:
            indexes = range(start, argc - 1)  # a keyword in last place names no key
        else:
            indexes = range(argc + start, 0, -1)
        first = 0
        for i in indexes:
            if i >= argc or i < 1:
                break
            if argv[i].lower() == keyword:
                first = i + 1
                break
        if not first:
            return []  # keyword absent: this spec names no key
    else:
        raise _InvalidSpec
    if ks.get("flags") and "incomplete" in ks["flags"]:
        raise _InvalidSpec
    if find["type"] == "range":
        lastkey, step, limit = find["spec"]["lastkey"], find["spec"]["keystep"], find["spec"]["limit"]
        if lastkey >= 0:
            last = first + lastkey
        elif not limit:
            last = argc + lastkey
        else:
            last = first + ((argc - first) // limit + lastkey)
    elif find["type"] == "keynum":
        idx, firstkey, step = find["spec"]["keynumidx"], find["spec"]["firstkey"], find["spec"]["keystep"]
        if idx >= argc - first:
            raise _InvalidSpec
        numkeys = parse_int(argv[first + idx])
        if numkeys is None or numkeys < 0:
            raise _InvalidSpec
        first += firstkey
        last = first + numkeys - 1
    else:
        raise _InvalidSpec
    if last >= argc or last < first or first >= argc:
        raise _InvalidSpec
    return list(range(first, last + 1, step or 1))


def _set_keys(spec, argv):
    flags = ("OW", "update")
    if any(arg.lower() == b"get" for arg in argv[3:]):
        flags = ("RW", "access", "update")
    return [(1, flags)]


def _bitfield_keys(spec, argv):
    readonly = True
    i, argc = 2, len(argv)
    while i < argc:
        remaining = argc - i - 1
        arg = argv[i].lower()
        if arg == b"get" and remaining >= 2:
            i += 3
        elif arg == b"overflow" and remaining >= 1:
            i += 2
        else:  # SET, INCRBY or a syntax error: assume it writes
            readonly = False
            break
    return [(1, ("RO", "access") if readonly else ("RW", "access", "update"))]


def _sort_keys(spec, argv):
    keys = [(1, ("RO", "access"))]
    store = None
    skip = {b"limit": 2, b"get": 1, b"by": 1}
    i = 2
    while i < len(argv):
        arg = argv[i].lower()
        if arg in skip:
            i += skip[arg]
        elif arg == b"store" and i + 1 < len(argv):
            store = i + 1  # the last STORE wins, as in SORT itself
        i += 1
    if store is not None:
        keys.append((store, ("OW", "update")))
    return keys


def _sort_ro_keys(spec, argv):
    return [(1, ("RO", "access"))]


#: Commands whose keys their key specs cannot give (variable flags, unknown or
#: incomplete specs): name → finder returning ``[(position, flags)]``.
_KEY_FINDERS = {
    "set": _set_keys,
    "bitfield": _bitfield_keys,
    "sort": _sort_keys,
    "sort_ro": _sort_ro_keys,
}


def has_key_arguments(spec: CommandSpec) -> bool:
    """Whether ``spec`` takes key arguments at all (a key spec that is not ``not_key``)."""
    if spec.key_specs:
        return any("not_key" not in ks["flags"] for ks in spec.key_specs)
    return spec.first_key > 0 or spec.name in _KEY_FINDERS


def command_keys(spec: CommandSpec, argv: list[bytes]) -> list[tuple[int, tuple[str, ...]]]:
    """Positions and flags of the keys in a request ``argv`` for ``spec``.

    Key specs are used when none has variable flags and all apply to these
    arguments; otherwise the command's key finder decides, and a command without
    one yields no keys (Redis reports that as invalid arguments).
    """
    specs = spec.key_specs
    if not specs:
        flags = _LEGACY_WRITE_FLAGS if spec.is_write else _LEGACY_READ_FLAGS
        return [(i, flags) for i in spec.key_positions(argv)]
    if not any("variable_flags" in ks["flags"] for ks in specs):
        try:
            found = []
            for ks in specs:
                if "not_key" in ks["flags"]:
                    continue
                flags = tuple(ks["flags"])
                found.extend((i, flags) for i in _keys_by_spec(ks, argv))
            return found
        except _InvalidSpec:
            pass
    finder = _KEY_FINDERS.get(spec.name)
    return finder(spec, argv) if finder is not None else []


def key_positions(spec: CommandSpec, args: list[bytes]) -> list[int]:
    """Indexes of the keys in request ``args`` for ``spec`` (as COMMAND GETKEYS)."""
    if spec.movable_keys:
        return [i for i, _ in command_keys(spec, args)]
    return spec.key_positions(args)


def request_keys(spec: CommandSpec, args: list[bytes]) -> list[bytes]:
    """The keys request ``args`` names, in argument order."""
    return [args[i] for i in key_positions(spec, args)]
