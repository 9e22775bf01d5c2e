"""The text of ``INFO``: sections of ``field:value`` lines built from node state.

Tools parse this text (redis-py's ``info()``, redis-benchmark, exporters, test
harnesses), so its shape follows Redis 7.0: each section starts with a
``# Name`` header, lines end in ``\\r\\n``, sections are separated by an empty
line, and fields keep Redis's names and order.  Only fields respkv can report
truthfully are present; Redis fields describing machinery respkv does not have
(forks and copy-on-write, jemalloc arenas, per-command statistics) are left out
rather than filled with invented numbers.  respkv-specific fields
(``respkv_version``, ``python_version``) sit beside their Redis neighbours.

:func:`build_info` is a pure function of its inputs: the node, a
:class:`ProcessSample` of process-wide numbers (memory, CPU) and the current
time.  :func:`sample_process` takes that sample from the operating system, so
tests can build INFO text from fixed numbers.

Memory figures
--------------
A Python process has no allocator statistics comparable to jemalloc's, so
``used_memory`` is the node's own estimate of what its dataset costs (keys,
values, deadlines, access stamps, version records; see
:mod:`respkv.keyspace.memory`), kept as values change; it is what ``maxmemory``
limits.  ``used_memory_rss`` is the resident set size of the process
(``/proc/self/statm`` where available, else the peak RSS from ``getrusage``),
which also holds the interpreter (some 35 MB), so ``mem_fragmentation_ratio``
(RSS ÷ used) is high while the dataset is small.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import dataclass

#: Section name (lowercase, as a client asks for it) → header text, in output order.
SECTIONS: dict[str, str] = {
    "server": "Server",
    "clients": "Clients",
    "memory": "Memory",
    "persistence": "Persistence",
    "stats": "Stats",
    "replication": "Replication",
    "cpu": "CPU",
    "modules": "Modules",
    "cluster": "Cluster",
    "keyspace": "Keyspace",
}

#: What ``INFO`` and ``INFO default`` show; ``all``/``everything`` show every section.
DEFAULT_SECTIONS = tuple(SECTIONS)


@dataclass(frozen=True)
class ProcessSample:
    """Process-wide figures INFO reports, taken at one moment."""

    pid: int
    rss: int  # bytes resident now
    peak_rss: int  # largest resident size so far, bytes
    total_system_memory: int
    cpu_sys: float
    cpu_user: float
    cpu_sys_children: float
    cpu_user_children: float
    executable: str


def _statm_rss() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes(usage) -> int:
    # ru_maxrss is in kilobytes on Linux and the BSDs, in bytes on macOS.
    return usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024


def _total_system_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def sample_process() -> ProcessSample:
    """Read this process's memory and CPU figures from the operating system."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = _maxrss_bytes(me)
    rss = _statm_rss()
    if rss is None:
        rss = peak
    return ProcessSample(
        pid=os.getpid(),
        rss=rss,
        peak_rss=max(peak, rss),
        total_system_memory=_total_system_memory(),
        cpu_sys=me.ru_stime,
        cpu_user=me.ru_utime,
        cpu_sys_children=children.ru_stime,
        cpu_user_children=children.ru_utime,
        executable=sys.executable,
    )


def bytes_to_human(n: int) -> str:
    """Redis's short size notation: ``0B``, ``919.10K``, ``11.84M``, ``23.54G``."""
    if n < 1024:
        return f"{n}B"
    for unit in "KMGTP":
        n_units = n / 1024
        if n_units < 1024 or unit == "P":
            return f"{n_units:.2f}{unit}"
        n = n_units
    raise AssertionError("unreachable")


def select_sections(requested: list[bytes]) -> list[str]:
    """Sections to show for the arguments of ``INFO``, in canonical order.

    No argument, ``default``, ``all`` and ``everything`` select groups; other
    names select one section each, case-insensitively; unknown names are ignored
    (Redis replies with an empty text for them).
    """
    if not requested:
        return list(DEFAULT_SECTIONS)
    wanted: set[str] = set()
    for raw in requested:
        name = raw.decode("latin-1").lower()
        if name in ("all", "everything"):
            wanted.update(SECTIONS)
        elif name == "default":
            wanted.update(DEFAULT_SECTIONS)
        elif name in SECTIONS:
            wanted.add(name)
    return [name for name in SECTIONS if name in wanted]


def _multiplexing_api() -> str:
    # What trio's I/O manager uses on each platform.
    if sys.platform.startswith("linux"):
        return "epoll"
    if sys.platform == "win32":
        return "iocp"
    return "kqueue"


def _server(node, process: ProcessSample, now: float, config_file: str) -> list[tuple[str, object]]:
    uptime = max(0, int(now - node.started_at))
    hz = node.config["hz"]
    return [
        ("redis_version", node.redis_version),
        ("respkv_version", node.version),
        ("redis_git_sha1", "00000000"),
        ("redis_git_dirty", 0),
        ("redis_mode", getattr(node, "mode", "standalone")),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
        ("multiplexing_api", _multiplexing_api()),
        ("python_version", platform.python_version()),
        ("process_id", process.pid),
        ("process_supervised", "no"),
        ("run_id", node.run_id),
        ("tcp_port", node.port),
        ("server_time_usec", int(now * 1_000_000)),
        ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400),
        ("hz", hz),
        ("configured_hz", hz),
        ("executable", process.executable),
        ("config_file", config_file),
        ("io_threads_active", 0),
    ]


def _clients(node) -> list[tuple[str, object]]:
    sessions = list(node.clients.values())
    max_input = max((s.reader.buffered() for s in sessions), default=0)
    return [
        ("connected_clients", len(sessions)),
        ("cluster_connections", 0),
        ("maxclients", node.config["maxclients"]),
        ("client_recent_max_input_buffer", max_input),
        ("client_recent_max_output_buffer", 0),
        ("blocked_clients", node.blocking.blocked_count),
        ("tracking_clients", node.tracking.clients),
        ("clients_in_timeout_table", node.blocking.timeout_count),
    ]


def _memory(node, process: ProcessSample) -> list[tuple[str, object]]:
    used = node.used_memory()
    peak = max(node.used_memory_peak, used)
    clients = node.client_memory.held
    overhead = node.keyspace.memory_overhead() + clients
    dataset = max(used - overhead, 0)
    rss = process.rss
    maxmemory = node.config["maxmemory"]
    return [
        ("used_memory", used),
        ("used_memory_human", bytes_to_human(used)),
        ("used_memory_rss", rss),
        ("used_memory_rss_human", bytes_to_human(rss)),
        ("used_memory_peak", peak),
        ("used_memory_peak_human", bytes_to_human(peak)),
        ("used_memory_peak_perc", f"{100 * used / peak if peak else 100:.2f}%"),
        ("used_memory_overhead", overhead),
        ("used_memory_startup", 0),
        ("used_memory_dataset", dataset),
        ("used_memory_dataset_perc", f"{100 * dataset / used if used else 0:.2f}%"),
        ("total_system_memory", process.total_system_memory),
        ("total_system_memory_human", bytes_to_human(process.total_system_memory)),
        ("maxmemory", maxmemory),
        ("maxmemory_human", bytes_to_human(maxmemory)),
        ("maxmemory_policy", node.config.get_text("maxmemory-policy")),
        ("mem_fragmentation_ratio", f"{rss / used if used else 0:.2f}"),
        ("mem_fragmentation_bytes", rss - used),
        ("mem_not_counted_for_evict", 0),
        ("mem_clients_normal", clients),
        ("mem_allocator", "pymalloc"),
        ("lazyfree_pending_objects", 0),
    ]


def _persistence(node) -> list[tuple[str, object]]:
    """Redis 7.0's fields, in its order, from the node's journal; respkv's own after.

    One mechanism (the journal's rewrite: a snapshot and a fresh log) stands for
    both of Redis's RDB saves and AOF rewrites, so the ``rdb_*`` and ``aof_*``
    fields about them report the same runs.  Fields about forks and copy-on-write
    are left out (there are none).
    """
    journal = node.journal
    if journal is None:  # no journal of this node's own (replicated cluster nodes)
        return [
            ("loading", 0), ("async_loading", 0), ("rdb_bgsave_in_progress", 0),
            ("rdb_last_save_time", node.last_save), ("rdb_saves", 0), ("aof_enabled", 0),
            ("aof_rewrite_in_progress", 0), ("aof_rewrite_scheduled", 0),
        ]
    rewrites = node.rewrites
    running = int(bool(rewrites is not None and rewrites.running))
    scheduled = int(bool(rewrites is not None and rewrites.scheduled))
    done, total = journal.rewrite_progress if journal.rewriting else (0, 0)
    current_seconds = int(journal.rewrite_seconds) if journal.rewriting else -1
    last_seconds = round(journal.last_rewrite_seconds) if journal.last_rewrite_seconds >= 0 else -1
    status = "ok" if journal.last_rewrite_ok else "err"
    commit_log = journal.log
    fields: list[tuple[str, object]] = [
        ("loading", int(journal.loading)),
        ("async_loading", 0),
        ("current_save_keys_processed", done),
        ("current_save_keys_total", total),
        ("rdb_changes_since_last_save", journal.changes),
        ("rdb_bgsave_in_progress", running),
        ("rdb_last_save_time", journal.last_save_time),
        ("rdb_last_bgsave_status", status),
        ("rdb_last_bgsave_time_sec", last_seconds),
        ("rdb_current_bgsave_time_sec", current_seconds),
        ("rdb_saves", journal.rewrites),
        ("rdb_last_load_keys_loaded", node.keys_loaded),
        ("aof_enabled", int(journal.appendonly)),
        ("aof_rewrite_in_progress", running),
        ("aof_rewrite_scheduled", scheduled),
        ("aof_last_rewrite_time_sec", last_seconds),
        ("aof_current_rewrite_time_sec", current_seconds),
        ("aof_last_bgrewrite_status", status),
        ("aof_rewrites", journal.rewrites),
        ("aof_rewrites_consecutive_failures", journal.rewrite_failures_in_a_row),
        ("aof_last_write_status", commit_log.write_status if commit_log is not None else "ok"),
    ]
    if commit_log is not None:
        fields += [
            ("aof_current_size", journal.current_size),
            ("aof_base_size", journal.base_size),
            ("aof_pending_rewrite", scheduled),
            ("aof_buffer_length", commit_log.pending_bytes),
            ("aof_pending_bio_fsync", int(commit_log.fsync_running)),
            ("aof_delayed_fsync", 0),  # writes never wait for a running fsync
        ]
    fields += [
        ("journal_entries_loaded", journal.loaded_entries),
        ("journal_load_seconds", f"{journal.load_seconds:.3f}"),
        ("journal_load_truncations", len(journal.truncations)),
        ("journal_load_skipped_entries", journal.skipped_entries),
        ("journal_snapshot_size", journal.snapshot_size),
        ("journal_fsync", journal.fsync if commit_log is not None else "none"),
    ]
    return fields


def _stats(node) -> list[tuple[str, object]]:
    st = node.stats
    exceeded_total, exceeded_now = node.evictor.exceeded_ms(node.keyspace.clock_ms())
    ops, input_kbps, output_kbps = node.instantaneous.info_fields()
    return [
        ("total_connections_received", st.connections_received),
        ("total_commands_processed", st.commands_processed),
        ops,
        ("total_net_input_bytes", st.net_input_bytes),
        ("total_net_output_bytes", st.net_output_bytes),
        input_kbps,
        output_kbps,
        ("rejected_connections", st.rejected_connections),
        ("expired_keys", node.keyspace.expired_keys),
        ("evicted_keys", node.keyspace.evicted_keys),
        ("evicted_clients", st.evicted_clients),
        ("total_eviction_exceeded_time", int(exceeded_total)),
        ("current_eviction_exceeded_time", int(exceeded_now)),
        ("keyspace_hits", st.keyspace_hits),
        ("keyspace_misses", st.keyspace_misses),
        *node.pubsub.stats().items(),
        *node.tracking.stats().items(),
    ]


def _replication(node) -> list[tuple[str, object]]:
    fields: list[tuple[str, object]] = [
        ("role", "master"),
        ("connected_slaves", 0),
        ("master_failover_state", "no-failover"),
        ("master_repl_offset", 0),
        ("second_repl_offset", -1),
        ("repl_backlog_active", 0),
    ]
    config = node.config
    fields += [
        ("replication_factor", config["replication-factor"]),
        ("read_quorum", config["read-quorum"]),
        ("write_quorum", config["write-quorum"]),
        ("request_timeout", config["request-timeout"]),
        ("max_siblings", config["max-siblings"]),
    ]
    coordinator = getattr(node, "replication", None)
    fields.append(("replication_enabled", int(coordinator is not None)))
    if coordinator is not None:
        store = coordinator.store
        quorums = coordinator.quorums(None)
        fields += [
            ("effective_n", quorums.n),
            ("effective_r", quorums.r),
            ("effective_w", quorums.w),
            *coordinator.stats.items(),
            ("versioned_keys", len(store.records)),
            ("keys_with_siblings", store.sibling_count()),
            ("siblings_dropped", store.siblings_dropped),
            ("versions_applied", store.versions_applied),
            ("tombstones_purged", store.tombstones_purged),
            *coordinator.handoff.info_fields(),  # hints_pending, _stored, _delivered, _dropped, per node
        ]
        anti_entropy = getattr(coordinator, "anti_entropy", None)
        if anti_entropy is not None:
            fields += anti_entropy.info().items()
        ownership = getattr(coordinator, "ownership", None)
        if ownership is not None:
            fields += ownership.info().items()
    return fields


def _cpu(process: ProcessSample) -> list[tuple[str, object]]:
    return [
        ("used_cpu_sys", f"{process.cpu_sys:.6f}"),
        ("used_cpu_user", f"{process.cpu_user:.6f}"),
        ("used_cpu_sys_children", f"{process.cpu_sys_children:.6f}"),
        ("used_cpu_user_children", f"{process.cpu_user_children:.6f}"),
    ]


def _cluster(node) -> list[tuple[str, object]]:
    return [("cluster_enabled", int(getattr(node, "mode", "standalone") == "cluster"))]


def _keyspace(node, only) -> list[str]:
    ks = node.keyspace
    keys = ks.dbsize(only)
    if not keys:
        return []
    # Redis estimates avg_ttl by sampling; respkv does not, and reports 0 ("unknown").
    return [f"db0:keys={keys},expires={ks.volatile_count(only)},avg_ttl=0"]


def _lines(fields: list[tuple[str, object]]) -> list[str]:
    return [f"{name}:{value}" for name, value in fields]


def build_info(node, sections: list[str], process: ProcessSample, now: float | None = None,
               config_file: str = "", slots=None) -> bytes:
    """The INFO text for ``sections`` (names from :data:`SECTIONS`, in order);
    the keyspace section counts the keys of ``slots`` (a mask, None: every key)."""
    if now is None:
        now = time.time()
    parts = []
    for name in sections:
        if name == "server":
            lines = _lines(_server(node, process, now, config_file))
        elif name == "clients":
            lines = _lines(_clients(node))
        elif name == "memory":
            lines = _lines(_memory(node, process))
        elif name == "persistence":
            lines = _lines(_persistence(node))
        elif name == "stats":
            lines = _lines(_stats(node))
        elif name == "replication":
            lines = _lines(_replication(node))
        elif name == "cpu":
            lines = _lines(_cpu(process))
        elif name == "cluster":
            lines = _lines(_cluster(node))
        elif name == "keyspace":
            lines = _keyspace(node, slots)
        else:  # "modules": respkv loads none
            lines = []
        parts.append("".join(f"{line}\r\n" for line in [f"# {SECTIONS[name]}", *lines]))
    return "\r\n".join(parts).encode()
