"""MEMORY: what the dataset costs, by key and in total (see :mod:`respkv.keyspace.memory`).

The figures are the node's estimate, the same ``used_memory`` that ``maxmemory``
limits; the resident set size of the process is beside them where Redis shows
allocator figures.  ``MALLOC-STATS`` answers as Redis does without jemalloc, and
``PURGE`` has nothing to give back (CPython returns freed arenas by itself).
"""

from __future__ import annotations

from sys import getsizeof

from ..errors import SYNTAX
from ..keyspace.memory import EXPIRY_OBJECTS
from ..keyspace.numbers import parse_int
from ..protocol import reply
from .info import sample_process
from .table import CommandError, command, container

container("memory", "Memory usage of keys and of the dataset.", since="4.0.0")


@command("memory|usage", "Estimated bytes of a key and its value.", since="4.0.0")
def memory_usage(s, args):
    """``MEMORY USAGE key [SAMPLES count]``: nil for a missing key; a collection's
    members are costed from ``count`` samples (5 by default, all with 0)."""
    samples = 5
    rest = args[3:]
    while rest:
        if rest[0].upper() != b"SAMPLES" or len(rest) < 2:
            raise CommandError(SYNTAX)
        count = parse_int(rest[1])
        if count is None:
            raise CommandError("ERR value is not an integer or out of range")
        if count < 0:
            raise CommandError(SYNTAX)
        samples = count
        rest = rest[2:]
    cost = s.ks.key_memory(args[2], samples)
    return s.proto.null if cost is None else reply.integer(cost)


def _stats_fields(node) -> list[tuple[bytes, object]]:
    """``MEMORY STATS``'s fields (those respkv can report), values as Python numbers."""
    ks = node.keyspace
    used = node.used_memory()
    peak = max(node.used_memory_peak, used)
    overhead = ks.memory_overhead() + node.client_memory.held
    keys = ks.dbsize()
    dataset = max(used - overhead, 0)
    rss = sample_process().rss
    return [
        (b"peak.allocated", peak),
        (b"total.allocated", used),
        (b"startup.allocated", 0),
        (b"clients.normal", node.client_memory.held),
        (b"db.0", [(b"overhead.hashtable.main", getsizeof(ks.data)),
                   (b"overhead.hashtable.expires", getsizeof(ks.expires) + EXPIRY_OBJECTS * ks.volatile_count())]),
        (b"overhead.total", overhead),
        (b"keys.count", keys),
        (b"keys.bytes-per-key", used // keys if keys else 0),
        (b"dataset.bytes", dataset),
        (b"dataset.percentage", 100.0 * dataset / used if used else 0.0),
        (b"peak.percentage", 100.0 * used / peak if peak else 0.0),
        (b"fragmentation", rss / used if used else 0.0),
        (b"fragmentation.bytes", rss - used),
    ]


def _encode(proto, value) -> bytes:
    if isinstance(value, list):
        return proto.map([(reply.bulk(name), _encode(proto, inner)) for name, inner in value])
    if isinstance(value, float):
        return proto.double(value)
    return reply.integer(value)


@command("memory|stats", "Figures of the dataset's memory: total, overhead, per key.", since="4.0.0")
def memory_stats(s, args):
    return _encode(s.proto, _stats_fields(s.node))


#: Below this many bytes of dataset the doctor has nothing to say.
_DOCTOR_MINIMUM = 5 * 1024 * 1024


def doctor_report(used: int, peak: int, rss: int, maxmemory: int, evicted: int) -> str:
    """``MEMORY DOCTOR``'s text from the node's figures (pure, for tests)."""
    if used < _DOCTOR_MINIMUM:
        return ("The dataset holds less than 5 MB: too little for a diagnosis. "
                "Ask again once the node holds real data.\n")
    findings = []
    if peak > used * 3 // 2:
        findings.append(f"* Peak: the dataset once used {peak} bytes, over 1.5 times the {used} it uses now; "
                        "the process may still hold pages from then (see used_memory_rss).")
    if rss > used * 2 + 64 * 1024 * 1024:
        findings.append(f"* Resident size: the process holds {rss} bytes for a {used}-byte dataset. Part is the "
                        "Python interpreter (some 35 MB); the rest is memory freed but kept by the allocator, "
                        "which new values reuse.")
    if maxmemory and used > maxmemory * 9 // 10:
        findings.append(f"* maxmemory: the dataset uses {used} of {maxmemory} bytes"
                        + (f"; {evicted} keys were evicted so far." if evicted else
                           "; writes that add data fail once it is reached unless an eviction policy is set."))
    if not findings:
        return "No memory problems found.\n"
    return "Findings:\n\n" + "\n\n".join(findings) + "\n"


@command("memory|doctor", "Reports memory problems it detects, with advice.", since="4.0.0")
def memory_doctor(s, args):
    node = s.node
    used = node.used_memory()
    text = doctor_report(used, max(node.used_memory_peak, used), sample_process().rss,
                         node.config["maxmemory"], node.keyspace.evicted_keys)
    return s.proto.verbatim(text.encode())


@command("memory|malloc-stats", "Allocator statistics (none without jemalloc).", since="4.0.0")
def memory_malloc_stats(s, args):
    return reply.bulk(b"Stats not supported for the current allocator")


@command("memory|purge", "Asks the allocator to give back memory (nothing to do here).", since="4.0.0")
def memory_purge(s, args):
    return reply.OK


_MEMORY_HELP = reply.help_lines((
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
))


@command("memory|help", "Lists the MEMORY subcommands.", since="4.0.0")
def memory_help(s, args):
    return _MEMORY_HELP
