"""Node configuration: the directives respkv understands, their defaults and parsing.

Directives use Redis's names and value syntax so a ``redis.conf``-style file
(``directive value`` lines, ``#`` comments) and ``CONFIG GET``/``CONFIG SET`` work
as Redis users expect.  Every directive is declared once in :data:`DIRECTIVES`; an
unknown directive in a config file is a start-up error, and ``CONFIG SET`` refuses
directives that cannot change while the node runs.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from . import REDIS_VERSION
from .keyspace.eviction import POLICIES
from .keyspace.glob import compile_glob


class ConfigError(ValueError):
    """A directive or value the node cannot accept; the message says which."""


_UNITS = {"k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def parse_memory(text: str) -> int:
    """Parse ``100``, ``64mb``, ``1gb`` (Redis memory units, case-insensitive)."""
    t = text.strip().lower()
    for suffix in ("kb", "mb", "gb", "k", "m", "g"):
        if t.endswith(suffix) and _is_number(t[: -len(suffix)]):
            return int(t[: -len(suffix)]) * _UNITS[suffix]
    if _is_number(t):
        return int(t)
    raise ConfigError("argument must be a memory value")


def _is_number(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes other scripts' digits and
    superscripts, which ``int`` refuses or reads)."""
    return text.isascii() and text.isdigit()


def _parse_memory_or_percent(text: str) -> int:
    """A memory value, or ``N%`` (0 to 100) kept as ``-N`` (as Redis keeps it)."""
    t = text.strip()
    if t.endswith("%") and _is_number(t[:-1]):
        percent = int(t[:-1])
        if percent > 100:
            raise ConfigError("percentage argument must be less or equal to 100")
        return -percent
    try:
        return parse_memory(t)
    except ConfigError:
        raise ConfigError("argument must be a memory or percent value") from None


def _show_memory_or_percent(value: int) -> str:
    return f"{-value}%" if value < 0 else str(value)


#: ``client-output-buffer-limit`` classes, in the order Redis lists them (``slave``
#: and ``replica`` are one class).
OUTPUT_CLASSES = ("normal", "replica", "pubsub")
_OUTPUT_CLASS_NAMES = {"normal": "normal", "replica": "replica", "slave": "replica", "pubsub": "pubsub"}


def _parse_output_limits(text: str) -> dict[str, tuple[int, int, int]]:
    """``CLASS HARD SOFT SECONDS ...`` of ``client-output-buffer-limit``: the classes
    named (the others keep their values, :func:`_merge_output_limits`)."""
    words = text.split()
    if not words or len(words) % 4:
        raise ConfigError("Wrong number of arguments in buffer limit configuration.")
    limits = {}
    for i in range(0, len(words), 4):
        kind = _OUTPUT_CLASS_NAMES.get(words[i].lower())
        if kind is None:
            raise ConfigError("Invalid client class specified in buffer limit configuration.")
        try:
            hard, soft = parse_memory(words[i + 1]), parse_memory(words[i + 2])
            seconds = int(words[i + 3])
        except (ConfigError, ValueError):
            raise ConfigError("Error in hard, soft or soft_seconds setting in buffer limit configuration.") from None
        if seconds < 0:
            raise ConfigError("Error in hard, soft or soft_seconds setting in buffer limit configuration.")
        limits[kind] = (hard, soft, seconds)
    return limits


def _merge_output_limits(old: dict, new: dict) -> dict:
    return {**old, **new}


def _show_output_limits(limits: dict) -> str:
    return " ".join(f"{'slave' if kind == 'replica' else kind} {h} {s} {sec}"
                    for kind in OUTPUT_CLASSES for h, s, sec in [limits[kind]])


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError("argument couldn't be parsed into an integer") from None


def _parse_bool(text: str) -> bool:
    t = text.lower()
    if t in ("yes", "no"):
        return t == "yes"
    raise ConfigError("argument must be 'yes' or 'no'")


def _format_bool(v: bool) -> str:
    return "yes" if v else "no"


#: A ``save`` schedule: ``(seconds, changes)`` pairs, "snapshot after ``seconds`` if
#: at least ``changes`` keys changed since the last one".
SaveSchedule = tuple[tuple[int, int], ...]


def parse_save_schedule(text: str) -> SaveSchedule:
    """Redis's ``save`` value: ``"3600 1 300 100"`` (pairs of seconds, changes) or
    ``""`` for no schedule; seconds at least 1, changes at least 0.  The error is
    Redis 7.0's text."""
    words = text.split()
    if len(words) % 2:
        raise ConfigError("Invalid save parameters")
    numbers = []
    for index, word in enumerate(words):
        try:
            value = int(word, 10)
        except ValueError:
            raise ConfigError("Invalid save parameters") from None
        if value < (1 if index % 2 == 0 else 0):
            raise ConfigError("Invalid save parameters")
        numbers.append(value)
    return tuple((numbers[i], numbers[i + 1]) for i in range(0, len(numbers), 2))


def _show_save(schedule: SaveSchedule) -> str:
    return " ".join(f"{seconds} {changes}" for seconds, changes in schedule)


def _parse_fsync(text: str) -> str:
    t = text.lower()
    if t not in ("always", "everysec", "no"):
        raise ConfigError("argument(s) must be one of the following: everysec, always, no")
    return t


def _parse_policy(text: str) -> str:
    if text.lower() not in POLICIES:
        raise ConfigError("argument(s) must be one of the following: " + ", ".join(POLICIES))
    return text.lower()


def _parse_version(text: str) -> str:
    parts = text.split(".")
    if len(parts) != 3 or not all(part.isdigit() and len(part) <= 4 for part in parts):
        raise ConfigError("argument must be a version such as 7.0.15")
    return text


def _parse_loglevel(text: str) -> str:
    t = text.lower()
    if t not in ("debug", "verbose", "notice", "warning"):
        raise ConfigError("argument(s) must be one of the following: debug, verbose, notice, warning")
    return t


def _parse_ip(text: str) -> str:
    if not text:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError("argument must be an IP address") from None


def _parse_debug_command(text: str) -> str:
    t = text.lower()
    if t not in ("no", "yes", "local"):
        raise ConfigError("argument(s) must be one of the following: no, yes, local")
    return t


def _show_secret(value: object) -> str:
    """A cluster secret is never shown, only whether one is set."""
    return "(set)" if value else ""


def _parse_routing(text: str) -> str:
    t = text.lower()
    if t not in ("redirect", "proxy"):
        raise ConfigError("argument(s) must be one of the following: redirect, proxy")
    return t


def _parse_path(text: str) -> str:
    if not text.strip():
        raise ConfigError("argument must be a file name")
    return text


@dataclass(frozen=True)
class Directive:
    name: str
    default: object
    parse: Callable[[str], object] = str
    show: Callable[[object], str] = str
    mutable: bool = True
    minimum: int | None = None
    maximum: int | None = None
    doc: str = ""
    #: For a directive whose value is set in parts: ``merge(old, parsed)``.
    merge: Callable[[object, object], object] | None = None

    def convert(self, text: str):
        value = self.parse(text)
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise ConfigError(f"argument must be between {self.minimum} and {self.maximum} inclusive")
        return value


DIRECTIVES: dict[str, Directive] = {d.name: d for d in [
    Directive("bind", "127.0.0.1", mutable=False, doc="Address to listen on."),
    Directive("port", 6379, _parse_int, mutable=False, minimum=0, maximum=65535, doc="Client port (0 = any free port)."),
    Directive("dir", "./respkv-data", mutable=False, doc="The node's data directory, created if missing."),
    Directive("requirepass", "", doc="Password for AUTH; empty means no authentication."),
    Directive("requirepass-file", "", mutable=False,
              doc="File whose first line is the password (read at start, when requirepass is empty), so "
                  "that the password is not on the command line for other users of the machine to see; "
                  "respkv cluster up passes its nodes one."),
    Directive("maxclients", 10000, _parse_int, minimum=1, maximum=2**32 - 1, doc="Most simultaneous client connections."),
    Directive("timeout", 0, _parse_int, minimum=0, maximum=2**31 - 1, doc="Close clients idle this many seconds (0 = never)."),
    Directive("hz", 10, _parse_int, minimum=1, maximum=500, doc="Background task frequency (active expiry cycles per second)."),
    Directive("loglevel", "notice", _parse_loglevel, doc="debug, verbose, notice or warning."),
    Directive("proto-max-bulk-len", 512 * 1024 * 1024, parse_memory, show=str, minimum=1024 * 1024, maximum=2**63 - 1,
              doc="Largest bulk string a client may send."),
    Directive("client-query-buffer-limit", 1024**3, parse_memory, minimum=1024 * 1024, maximum=2**63 - 1,
              doc="Most unparsed bytes buffered per client before it is disconnected."),
    Directive("client-output-buffer-limit",
              {"normal": (0, 0, 0), "replica": (256 * 1024**2, 64 * 1024**2, 60), "pubsub": (32 * 1024**2, 8 * 1024**2, 60)},
              _parse_output_limits, _show_output_limits, merge=_merge_output_limits,
              doc="CLASS HARD SOFT SECONDS ... as Redis: a pub/sub client (class pubsub) whose unsent messages "
                  "pass HARD bytes, or stay above SOFT bytes for SECONDS, is disconnected (0 = no limit). "
                  "Setting some classes keeps the others. The normal and replica classes are kept and "
                  "shown but limit nothing: a request's reply is sent before the connection's next "
                  "request is read, and respkv has no Redis replicas."),
    Directive("tracking-table-max-keys", 1_000_000, _parse_int, minimum=0, maximum=2**63 - 1,
              doc="Most keys the client-side caching table remembers readers of (0 = no limit); past it "
                  "the longest-remembered keys are dropped and their readers sent an invalidation, as if "
                  "the keys had changed (Redis drops random ones)."),
    Directive("advertised-redis-version", REDIS_VERSION, _parse_version, mutable=False,
              doc="The Redis version HELLO and INFO report. respkv behaves as Redis 7.0; redis-py (5.1 and "
                  "later) enables its client-side cache only for servers reporting 7.4.0 or later, so set "
                  "7.4.0 to use that cache (respkv implements the CLIENT TRACKING it needs, not the rest of 7.4)."),
    Directive("maxmemory", 0, parse_memory, minimum=0, maximum=2**63 - 1,
              doc="Most bytes the dataset may use (used_memory, the node's estimate of its keys, values and "
                  "bookkeeping; not the process size); above it keys are evicted as maxmemory-policy says, "
                  "or writes that add data get -OOM (0 = no limit)."),
    Directive("maxmemory-policy", "noeviction", _parse_policy,
              doc="What happens above maxmemory: noeviction (refuse writes that add data), allkeys-lru, "
                  "allkeys-lfu, allkeys-random (evict any key: least recently used, least frequently used, "
                  "at random), volatile-lru, volatile-lfu, volatile-random, volatile-ttl (only keys with a "
                  "TTL; ttl: the soonest to expire). In a replicated cluster a node evicts only keys it coordinates, "
                  "and replicates the deletion (see docs/memory.md)."),
    Directive("maxmemory-samples", 5, _parse_int, minimum=1, maximum=64,
              doc="Keys sampled per eviction by the LRU, LFU and TTL policies (more: closer to exact, slower)."),
    Directive("maxmemory-eviction-tenacity", 10, _parse_int, minimum=0, maximum=100,
              doc="How long one command may spend evicting: 50 µs per step up to 10, 15% more per step "
                  "above, unlimited at 100; when the time runs out the next commands evict the rest."),
    Directive("maxmemory-clients", 0, _parse_memory_or_percent, _show_memory_or_percent, minimum=-100,
              maximum=2**63 - 1,
              doc="Most bytes all client connections together may hold (unparsed input, queued MULTI "
                  "commands, unsent pub/sub messages), or N% of maxmemory; above it the connections holding "
                  "the most are closed, checked at every cron tick, except those with CLIENT NO-EVICT on "
                  "(0 = no limit; see docs/memory.md)."),
    Directive("lfu-log-factor", 10, _parse_int, minimum=0, maximum=2**31 - 1,
              doc="LFU counter: the higher, the more accesses a key needs to reach the counter's top (255)."),
    Directive("lfu-decay-time", 1, _parse_int, minimum=0, maximum=2**31 - 1,
              doc="LFU counter: minutes after which an idle key's counter drops by one (0 = never)."),
    Directive("save", (), parse_save_schedule, _show_save,
              doc="Snapshot schedule, as Redis: pairs of 'SECONDS CHANGES' (\"3600 1 300 100\": a snapshot once "
                  "an hour if a key changed, every 5 minutes after 100 changes); \"\" = none. A snapshot is a "
                  "background rewrite (BGSAVE): a new snapshot file and a fresh commit log. Empty by default, "
                  "as the commit log already keeps every change (Redis's default is \"3600 1 300 100 60 10000\"). "
                  "Repeated save lines in a config file add up, as in Redis."),
    Directive("appendonly", True, _parse_bool, _format_bool, mutable=False,
              doc="Keep a commit log in dir: every change is appended (as the key's new image) before it is "
                  "acknowledged, and replayed at start. no: only snapshots (BGSAVE, save schedule) persist data. "
                  "Fixed at start (CONFIG SET refuses it, unlike Redis)."),
    Directive("appendfsync", "everysec", _parse_fsync,
              doc="When the commit log is fsynced: always (before each event-loop round's acknowledgements "
                  "leave), everysec (once a second, in a thread), no (left to the kernel). See docs/durability.md "
                  "for what each can lose. CONFIG SET applies it to the next write."),
    Directive("auto-aof-rewrite-percentage", 100, _parse_int, minimum=0, maximum=2**31 - 1,
              doc="Rewrite (snapshot + fresh log) automatically once the data directory's snapshot and log "
                  "have grown by this percentage over their size after the last rewrite (or the start); "
                  "0 = never automatically."),
    Directive("auto-aof-rewrite-min-size", 64 * 1024 * 1024, parse_memory, minimum=0, maximum=2**63 - 1,
              doc="No automatic rewrite while the snapshot and log together are smaller than this."),
    Directive("aof-load-truncated", True, _parse_bool, _format_bool,
              doc="At start, cut a torn last entry off the commit log (a crash during a write) and go on, "
                  "with a log line; no: refuse to start."),
    Directive("aof-load-corrupt-truncate", False, _parse_bool, _format_bool,
              doc="At start, cut the commit log at an entry that fails its checksum with data after it, "
                  "losing everything after it; no (default): refuse to start, naming the file and offset."),
    Directive("databases", 1, _parse_int, mutable=False, minimum=1, maximum=1, doc="Read-only: only db 0 exists."),
    Directive("cluster-enabled", False, _parse_bool, _format_bool, mutable=False,
              doc="Run as a cluster member: gossip on the cluster bus, serve the slots the ring gives this node."),
    Directive("cluster-port", 0, _parse_int, mutable=False, minimum=0, maximum=65535,
              doc="Cluster bus port; 0 = client port + 10000 (any free port when the client port is 0 too)."),
    Directive("cluster-node-timeout", 5000, _parse_int, mutable=False, minimum=100, maximum=2**31 - 1,
              doc="Milliseconds of silence after which a member is flagged fail?; "
                  "members ping each other every fifth of it (at least every 100 ms)."),
    Directive("cluster-announce-ip", "", _parse_ip, mutable=False,
              doc="IP address peers and clients are told to use; empty = the bind address "
                  "(127.0.0.1 when binding 0.0.0.0)."),
    Directive("cluster-weight", 1, _parse_int, mutable=False, minimum=1, maximum=100,
              doc="This node's share of the ring relative to other members (tokens = weight x cluster-vnodes)."),
    Directive("cluster-vnodes", 1024, _parse_int, mutable=False, minimum=1, maximum=16384,
              doc="Ring tokens per unit of weight; every member must use the same value (MEET refuses others)."),
    Directive("replication-factor", 3, _parse_int, mutable=False, minimum=1, maximum=16,
              doc="N: nodes in each slot's preference list (coordinator and replicas), capped at the member count; "
                  "above 1, every key is versioned and replicated (cluster mode only)."),
    Directive("read-quorum", 2, _parse_int, minimum=1, maximum=16,
              doc="R: replicas (the coordinator included) that must answer a read; capped at N; "
                  "a connection may override it with CONSISTENCY."),
    Directive("write-quorum", 2, _parse_int, minimum=1, maximum=16,
              doc="W: replicas (the coordinator included) that must acknowledge a write before it is "
                  "reported done; capped at N; a connection may override it with CONSISTENCY."),
    Directive("request-timeout", 1000, _parse_int, minimum=1, maximum=3_600_000,
              doc="Milliseconds a coordinator waits for R or W replicas before answering -NOQUORUM."),
    Directive("max-siblings", 16, _parse_int, mutable=False, minimum=1, maximum=1000,
              doc="Concurrent versions kept per key; beyond it the oldest are dropped (counted in INFO replication)."),
    Directive("convergent-types", True, _parse_bool, _format_bool, mutable=False,
              doc="yes: concurrent versions (siblings) of a set, hash or sorted set show their merge "
                  "(add-wins observed-remove elements) and counters written by INCR/INCRBY/DECR/DECRBY/"
                  "INCRBYFLOAT/HINCRBY/HINCRBYFLOAT add up, for which writes keep small causal metadata (dots, per-node tallies). "
                  "no: no metadata; sets show the union of their siblings, other types the newest sibling "
                  "(resolve them with SIBLINGS/RESOLVE). Set it the same on every node."),
    Directive("tombstone-grace", 60000, _parse_int, minimum=0, maximum=2**31,
              doc="Milliseconds a deletion's tombstone is kept after every replica acknowledged it, "
                  "and an expired key's version record after it expired."),
    Directive("anti-entropy-interval", 10000, _parse_int, minimum=0, maximum=86_400_000,
              doc="Milliseconds between anti-entropy exchanges (each with the next live peer in turn: hash "
                  "trees compared, differing records merged both ways); 0 leaves only CLUSTER REPAIR."),
    Directive("anti-entropy-keys-per-second", 5000, _parse_int, minimum=1, maximum=10_000_000,
              doc="Records an anti-entropy exchange may pull or push per second, so that a large repair "
                  "leaves clients their latency."),
    Directive("anti-entropy-load-ops", 10000, _parse_int, minimum=0, maximum=10_000_000,
              doc="Client commands per second on a node (INFO's instantaneous_ops_per_sec) at which its "
                  "anti-entropy repairs slow to half of anti-entropy-keys-per-second (a third at twice the "
                  "load, and so on), so that clients keep their throughput; 0: repairs ignore the load."),
    Directive("anti-entropy-cpu-pressure", 10, _parse_int, minimum=0, maximum=100,
              doc="CPU pressure (per cent of the time a runnable task waited for a CPU: Linux's pressure stall "
                  "information of the node's cgroup, or of the machine) at which anti-entropy repairs and "
                  "ownership hand-offs slow to half their rate (a third at twice the pressure, and so on), so "
                  "that clients sharing the cores keep their throughput; 0: pressure is ignored."),
    Directive("handoff-keys-per-second", 5000, _parse_int, minimum=1, maximum=10_000_000,
              doc="Records per second a node pushes when the ring moves slots away from it (ownership hand-off), "
                  "slowed as anti-entropy-load-ops and anti-entropy-cpu-pressure say while clients keep the node "
                  "or the machine busy."),
    Directive("handoff-concurrency", 2, _parse_int, minimum=1, maximum=64,
              doc="Chunks of 64 slots a node hands over at once when the ring moves slots away from it."),
    Directive("sloppy-quorum", True, _parse_bool, _format_bool,
              doc="yes: when preferred replicas of a slot are down, a write also goes to the next live nodes "
                  "on the ring beyond its preference list (fallbacks), which keep it with a durable hint and "
                  "hand it off when the node is back; their acknowledgements count towards W (Dynamo's sloppy "
                  "quorum: writable while W nodes live, but a read may miss the write until hand-off). "
                  "no: only preferred replicas count (-NOQUORUM while fewer than W are up). "
                  "A connection may override it with CONSISTENCY SLOPPY."),
    Directive("max-hints-per-node", 100_000, _parse_int, minimum=0, maximum=2**31 - 1,
              doc="Hints (keys another node may lack, kept durably and handed off when it is back) a node "
                  "holds for any one other node; beyond it new hints for that node are dropped and counted "
                  "(hints_dropped in INFO replication), and anti-entropy repairs what they would have."),
    Directive("cluster-secret", "", show=_show_secret, mutable=False,
              doc="Shared secret of the cluster bus: peers prove they know it (HMAC challenge) before the bus "
                  "serves them, and nodes with different secrets refuse each other. Never sent, never shown "
                  "(CONFIG GET says '(set)'). Empty: read cluster-secret-file, else generate one in dir."),
    Directive("cluster-secret-file", "", mutable=False,
              doc="File whose first line is the cluster secret (used when cluster-secret is empty); "
                  "respkv cluster up writes one for its nodes. Empty: DIR/cluster-secret, created with a "
                  "random secret if missing."),
    Directive("cluster-config-file", "nodes.conf", _parse_path, mutable=False,
              doc="Where a cluster node keeps the members it knows (ids, addresses, weights, cluster-vnodes), "
                  "relative to dir unless absolute; rewritten atomically on every membership change and read "
                  "at start, so a restarted node comes back into its cluster without --join. One file per node."),
    Directive("enable-debug-command", "no", _parse_debug_command, mutable=False,
              doc="Fault-injection commands (BUSFAULT): no = refused, yes = allowed, local = allowed "
                  "from loopback clients only; as Redis's directive of that name for DEBUG."),
    Directive("protected-mode", True, _parse_bool, _format_bool,
              doc="With no requirepass set, refuse clients that do not connect from a loopback address "
                  "(-DENIED, as Redis)."),
    Directive("cluster-routing", "redirect", _parse_routing, mutable=False,
              doc="redirect: answer MOVED for slots another node coordinates; proxy: forward the command there."),
]}


class Config:
    """The node's current directive values."""

    def __init__(self, **overrides) -> None:
        #: The file the configuration was loaded from (INFO, CONFIG REWRITE), if any.
        self.path: str | None = None
        self._values = {name: d.default for name, d in DIRECTIVES.items()}
        for name, value in overrides.items():
            self._values[name.replace("_", "-")] = value

    def __getitem__(self, name: str):
        return self._values[name]

    def get_text(self, name: str) -> str:
        return DIRECTIVES[name].show(self._values[name])

    def set_text(self, name: str, text: str, *, startup: bool = False) -> None:
        """Set from text as in a config file or ``CONFIG SET``; raises ConfigError."""
        directive = DIRECTIVES.get(name.lower())
        if directive is None:
            raise ConfigError(f"Unknown option or number of arguments for CONFIG SET - '{name}'")
        if not startup and not directive.mutable:
            raise ConfigError("can't set immutable config")
        value = directive.convert(text)
        if directive.merge is not None:
            value = directive.merge(self._values[directive.name], value)
        self._values[directive.name] = value

    def matching(self, pattern: bytes) -> list[tuple[str, str]]:
        """``(name, value)`` of every directive whose name matches a glob pattern."""
        match = compile_glob(pattern.lower(), nocase=True)
        return [(name, self.get_text(name)) for name in DIRECTIVES if match(name.encode())]

    def load_file(self, path: str) -> None:
        """Apply a ``redis.conf``-style file; any unknown directive is an error."""
        self.path = path
        schedules: list[str] = []  # save lines add up, as in Redis; save "" clears them
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    words = shlex.split(line)
                except ValueError as exc:
                    raise ConfigError(f"{path}:{lineno}: {exc}") from None
                if len(words) != 2:
                    value = " ".join(words[1:])
                else:
                    value = words[1]
                if words[0].lower() == "save":
                    schedules = [value] if not value.strip() else [*schedules, value]
                    value = " ".join(schedules)
                try:
                    self.set_text(words[0], value, startup=True)
                except ConfigError as exc:
                    if words[0].lower() not in DIRECTIVES:
                        raise ConfigError(f"{path}:{lineno}: unknown directive '{words[0]}'") from None
                    raise ConfigError(f"{path}:{lineno}: '{words[0]}': {exc}") from None
