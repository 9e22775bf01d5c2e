"""One respkv node: its configuration, keyspace, command table, clients and tasks.

Theory of operation
-------------------
:class:`Node` is the holder every command handler reaches through its session
(``session.node``).  :func:`serve_node` opens the data directory and the client
listener, then runs the node's tasks in one nursery: the listener that spawns a
session per client, and the periodic "cron" that does active expiry and client
timeouts.  Cancelling that nursery (Ctrl-C, SIGTERM, a test's cancel scope) stops
the node; every task lives in it, so nothing outlives the node.

In cluster mode (``cluster-enabled yes``) :func:`serve_cluster` joins that nursery
before clients are accepted: it reads the node id and the saved membership
(``cluster-config-file``, see :mod:`respkv.cluster.persisted`) from the data
directory, opens the cluster bus listener, installs ``node.cluster`` (the
:class:`~respkv.cluster.state.ClusterState` sessions route by, starting from the
saved membership, so a restarted node keeps the cluster's ring) and runs the bus,
the gossip loop, the membership recorder, the ``--join`` attempts and, after a
restart, the meetings with the saved members in a nursery of its own.  With
``replication-factor`` above 1, :func:`start_replication` also installs the
replication coordinator (``node.replication``): it hooks the keyspace's change,
expiry and flush signals, answers the replication bus operations, and runs its
timeouts and hand-off loop in that nursery.

The commit log and snapshots of ``dir`` (:mod:`respkv.persistence.journal`)
hold the keyspace's values on a node without replication, opened by
:func:`serve_node` before clients are accepted; with replication they hold the
version records instead (:mod:`respkv.replication.journaled`), opened by
:func:`start_replication` before the cluster bus serves, so that no replica
traffic lands on a store that has not been loaded yet.  Every end-of-round
commit (:meth:`Node.persist_now`) tells :attr:`Node.commit_listeners` whether it
worked: the coordinator counts its own copy of a write towards W only then.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import time
from dataclasses import dataclass

import trio

from . import __version__
from .allocator import keep_big_blocks_in_mmaps
from .cluster.gossip import OPERATIONS as GOSSIP_OPERATIONS, BUS_PORT_OFFSET, Gossip, announce_ip, parse_address
from .cluster.identity import is_leaving, load_cluster_secret, load_or_create_node_id
from .cluster.membership import Member
from .cluster.persisted import MembershipRecorder, config_file_path, rejoin, restore
from .cluster.proxy import proxy_pool
from .cluster.state import PROXY, ClusterState
from .commands import FAMILIES
from .commands.blocking import BlockingRegistry
from .commands.table import CommandTable, build_table
from .config import Config, ConfigError
from .gc_policy import tune_for_serving
from .keyspace.eviction import ROOM_ELSEWHERE, ROOM_FAIL, Evictor
from .keyspace.memory import KEY_ENTRY, bytes_cost
from .keyspace.slots import key_slot
from .keyspace.store import NO_LIMIT, Keyspace
from .net.dispatch import Dispatcher
from .net.rates import InstantaneousMetrics
from .persistence.exceptions import LogWriteError
from .persistence.journal import Journal
from .persistence.command_entries import command_replay
from .persistence.keyspace_images import journal_plain_keyspace
from .persistence.rewrites import Rewrites
from .net.server import open_listener, serve_clients
from .net.clientmemory import ClientMemory
from .net.pubsub import PubSub
from .net.tracking import Tracking
from .peer.bus import ClusterBus
from .replication.antientropy import OPERATIONS as ANTI_ENTROPY_OPERATIONS, AntiEntropy
from .replication.replica import OPERATIONS as REPLICATION_OPERATIONS
from .replication.coordinator import Coordinator
from .replication.incarnation import Incarnation
from .replication.ownership import OPERATIONS as OWNERSHIP_OPERATIONS, OwnershipHandoff
from .replication.journaled import RecordReplay, operation_marker, record_image, record_marker
from .replication.store import VersionStore
from .replication.vclock import actor_of

log = logging.getLogger(__name__)

#: Keys one active-expiry step may delete before yielding to clients.
EXPIRE_STEP_KEYS = 200

#: Directives the eviction machinery reads (applied again when CONFIG SET changes one).
EVICTION_DIRECTIVES = frozenset(
    ("maxmemory", "maxmemory-policy", "maxmemory-samples", "maxmemory-eviction-tenacity",
     "lfu-log-factor", "lfu-decay-time")
)
#: Estimated bytes of a key's version record on a replicated node (its entry in
#: the store and the clock and digest bytes of one version).
VERSION_RECORD_BYTES = KEY_ENTRY + bytes_cost(48)

#: Every command family a node serves: the command layer's own, then the cluster
#: and replication commands, which live in the layers they need (in standalone mode
#: they answer that cluster support is disabled, as Redis does).
COMMAND_FAMILIES = (*FAMILIES, "respkv.cluster.commands", "respkv.replication.commands")


def build_command_table() -> CommandTable:
    """The table of every command a node answers (and ``COMMAND`` lists)."""
    return build_table(COMMAND_FAMILIES)


@dataclass
class Stats:
    """Counters reported by ``INFO stats``; reset by ``CONFIG RESETSTAT``."""

    connections_received: int = 0
    commands_processed: int = 0
    rejected_connections: int = 0
    net_input_bytes: int = 0
    net_output_bytes: int = 0
    keyspace_hits: int = 0
    keyspace_misses: int = 0
    evicted_clients: int = 0

    def reset(self) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, 0)


class Node:
    def __init__(self, config: Config, keyspace: Keyspace | None = None) -> None:
        self.config = config
        self.keyspace = keyspace or Keyspace()
        self.table = build_command_table()
        self.clients: dict = {}
        self.stats = Stats()
        #: INFO's instantaneous_* figures; anti-entropy paces repairs by the ops one.
        self.instantaneous = InstantaneousMetrics()
        self.run_id = secrets.token_hex(20)
        self.started_at = time.time()
        self.started_monotonic = time.monotonic()
        self.port = config["port"]
        self._client_ids = itertools.count(1)
        #: Hooks called with a session when it ends, and when it is RESET (transactions, blocked clients).
        self.client_closed_hooks: list = []
        self.client_reset_hooks: list = []
        self._key_observers: list = []
        #: True while used_memory exceeds ``maxmemory`` and nothing more may be
        #: evicted: writes that add data get -OOM (see make_room).
        self.over_maxmemory = False
        #: "standalone", or "cluster" once the node takes part in a cluster.
        self.mode = "standalone"
        #: Clients blocked in BLPOP & co., by key; sessions serve its ready keys.
        self.blocking = BlockingRegistry(self.keyspace, self.add_key_observer, self.remove_key_observer)
        self.client_closed_hooks.append(self.blocking.forget)
        #: Cluster mode (see :func:`serve_cluster`); all None when standalone.
        self.cluster: ClusterState | None = None
        #: Connections forwarding requests to coordinators (``--routing proxy``).
        self.cluster_proxy = None
        self.cluster_gossip: Gossip | None = None
        self.cluster_bus: ClusterBus | None = None
        #: ``HOST:PORT[@BUSPORT]`` client addresses of members to join at start.
        self.cluster_join: list[str] = []
        #: Cluster bus operations: op -> handler(peer_id, op, args), as the bus calls it.
        self.bus_operations: dict = {}
        #: The replication coordinator, in cluster mode with replication-factor > 1.
        self.replication: Coordinator | None = None
        self.evictor = Evictor(self.keyspace)
        self._configure_eviction()
        #: The highest used_memory the cron saw (INFO's used_memory_peak).
        self.used_memory_peak = 0
        #: Called at the end of every poller round (see net.poller): replication
        #: flushes what the round queued for each peer.
        self.round_hooks: list = []
        #: Called by the cron at every tick (each of the next three hooks itself in).
        self.cron_hooks: list = []
        #: CLIENT TRACKING, pub/sub, client memory (net.tracking, net.pubsub, net.clientmemory).
        self.tracking = Tracking(self)
        self.pubsub = PubSub(self)
        self.client_memory = ClientMemory(self)
        #: The session whose requests run now, None outside them (for NOLOOP).
        self.executing = None
        #: What sessions may run without the general checks (see net.dispatch).
        self.dispatcher = Dispatcher(self)
        #: The commit log and snapshots of ``dir`` (see persistence.journal).
        self.journal: Journal | None = None
        #: The error writes get while the node cannot persist them (-MISCONF), else None.
        self.write_refusal: str | None = None
        #: Keys in the keyspace right after the journal was loaded (INFO persistence).
        self.keys_loaded = 0
        #: Called with True after each commit of the log that worked, False after
        #: one that failed (the coordinator acknowledges its own copies then).
        self.commit_listeners: list = []
        #: Starts the journal's rewrites (BGSAVE & co.), once the journal is open.
        self.rewrites: Rewrites | None = None
        #: The nursery of serve_node while the node runs (see start_background).
        self._nursery: trio.Nursery | None = None
        self._stop_requested = False

    # -- key-change observers (WATCH, blocked clients) ---------------------------

    def add_key_observer(self, observer) -> None:
        """Call ``observer(key)`` after every change of a key, until removed.

        The keyspace's single ``on_modified`` hook stays ``None`` while nobody
        observes, so writes pay nothing for WATCH and blocking commands unless used.
        """
        if observer not in self._key_observers:
            self._key_observers.append(observer)
        self._install_observers()

    def remove_key_observer(self, observer) -> None:
        if observer in self._key_observers:
            self._key_observers.remove(observer)
        self._install_observers()

    def _install_observers(self) -> None:
        observers = tuple(self._key_observers)
        if not observers:
            self.keyspace.on_modified = None
        elif len(observers) == 1:
            self.keyspace.on_modified = observers[0]
        else:
            def notify_all(key: bytes) -> None:
                for observer in observers:
                    observer(key)

            self.keyspace.on_modified = notify_all

    def handle_bus(self, peer_id: str, op: bytes, args: list[bytes]):
        """Route one bus request to its operation; any request means the peer is alive."""
        if self.cluster_gossip is not None:
            self.cluster_gossip.heard(peer_id)
        handler = self.bus_operations.get(op)
        if handler is None:
            raise ValueError(f"unknown cluster bus operation {op!r}")
        return handler(peer_id, op, args)

    def next_client_id(self) -> int:
        return next(self._client_ids)

    def on_client_closed(self, session) -> None:
        for hook in self.client_closed_hooks:
            hook(session)

    @property
    def last_save(self) -> int:
        """Unix time of the last successful snapshot (the start if none): LASTSAVE."""
        if self.journal is not None:
            return self.journal.last_save_time
        return int(self.started_at)

    @property
    def version(self) -> str:
        return __version__

    @property
    def redis_version(self) -> str:
        """The version HELLO and INFO report (``advertised-redis-version``)."""
        return self.config["advertised-redis-version"]

    async def run_cron(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Periodic housekeeping, ``hz`` times a second: active expiry, idle clients."""
        task_status.started()
        ks = self.keyspace
        while True:
            await trio.sleep(1 / self.config["hz"])
            # Expire due keys in steps, yielding between them so clients keep going.
            while ks.expire_due(EXPIRE_STEP_KEYS) == EXPIRE_STEP_KEYS:
                await trio.sleep(0)
            self._close_idle_clients()
            self.instantaneous.sample(time.monotonic(), self.stats)
            for hook in self.cron_hooks:  # tracking's table bound, pub/sub output limits, maxmemory-clients
                hook()
            ks.tick_access()  # the LRU/LFU clocks move once per cron tick, as Redis's
            evicted = ks.evicted_keys
            self.make_room()
            if ks.evicted_keys != evicted and self.replication is not None:
                for hook in self.round_hooks:  # the evictions' deletions leave now, not at the next round
                    hook()
            self.used_memory_peak = max(self.used_memory_peak, self.used_memory())
            if self.write_refusal is not None and self.journal is not None and not self.journal.failed:
                log.warning("the commit log is writable again: accepting writes")
                self._refuse_writes(None)
            if self.rewrites is not None:
                self.rewrites.tick()  # the save schedule, automatic rewrites, BGSAVE SCHEDULE

    # -- running and stopping -----------------------------------------------------

    def start_background(self, async_fn, *args) -> None:
        """Run ``async_fn(*args)`` as a task of the node's nursery: it runs while the
        node serves and is cancelled when the node stops (background rewrites)."""
        if self._nursery is None:
            raise RuntimeError("the node is not running")
        self._nursery.start_soon(async_fn, *args)

    def stop(self) -> None:
        """End :func:`serve_node`: every task of the node is cancelled, then the
        commit log is written and fsynced and closed (what SIGTERM comes to)."""
        self._stop_requested = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def shutdown(self, *, save: bool | None = None, force: bool = False) -> bool:
        """Stop the node as Redis's SHUTDOWN does; SIGTERM and SIGINT come here too.

        With ``save`` (None: when a ``save`` schedule is set, as Redis decides) a
        snapshot is written first, after any running rewrite.  If that fails the
        node keeps running and False is returned, unless ``force``.  Then
        :meth:`stop`: the commit log is written and fsynced whatever the fsync policy.
        """
        if save is None:
            save = bool(self.config["save"])
        if save and self.rewrites is not None:
            log.info("saving a snapshot before shutting down")
            try:
                await self.rewrites.save_when_idle()
            except Exception as exc:
                if not force:
                    log.error("Error trying to save the DB, can't exit: %s", exc)
                    return False
                log.error("Error trying to save the DB. Exit anyway: %s", exc)
        log.info("shutting down: the commit log is written and fsynced, then the node stops")
        self.stop()
        return True

    def config_changed(self, names: list[str]) -> None:
        """Apply directives ``CONFIG SET`` changed that live state depends on (most
        are read where they are used, and need nothing here)."""
        if "appendfsync" in names and self.journal is not None:
            self.journal.set_fsync(self.config["appendfsync"])
        if EVICTION_DIRECTIVES.intersection(names):
            self._configure_eviction()
            self.make_room()  # CONFIG SET maxmemory takes effect now

    # -- memory --------------------------------------------------------------------

    def _configure_eviction(self) -> None:
        config = self.config
        self.maxmemory = config["maxmemory"]
        self.evictor.configure(config["maxmemory-policy"], config["maxmemory-samples"],
                               config["maxmemory-eviction-tenacity"], config["lfu-log-factor"],
                               config["lfu-decay-time"])
        replication = self.replication
        if replication is not None:  # evict only what this node coordinates, and replicate it
            cluster = self.cluster
            self.evictor.eligible = lambda key: cluster.topology.coordinator(key_slot(key)) == cluster.myself
            self.evictor.on_evicted = lambda key: replication.evicted([key])

    def used_memory(self) -> int:
        """``used_memory``: the dataset's estimated bytes (keyspace, see keyspace.memory),
        the clients' as of the last tick and, with replication, the version records."""
        used = self.keyspace.memory_used() + self.client_memory.current()
        if self.replication is not None:  # the records of live keys (tombstones go soon, see docs/memory.md)
            used += min(len(self.replication.store.records), self.keyspace.dbsize()) * VERSION_RECORD_BYTES
        return used

    def make_room(self) -> None:
        """While used_memory is above ``maxmemory``, evict keys as
        ``maxmemory-policy`` says (for as long as ``maxmemory-eviction-tenacity``
        allows).  ``over_maxmemory`` then says whether writes that add data are
        refused (nothing more may be evicted).

        Runs before a command once the keyspace's ``stored_bytes`` passed
        ``evict_at`` (the room left at the last check; sessions and run handlers
        compare the two, which costs less than adding up used_memory per command),
        from the cron, and when CONFIG SET changes maxmemory."""
        over = False
        ks = self.keyspace
        if self.maxmemory:
            outcome = self.evictor.make_room(self.used_memory, self.maxmemory, ks.clock_ms())
            over = outcome == ROOM_FAIL
            # Waiting for other coordinators' evictions: look again after some growth
            # (or the next cron tick), not before every command.
            slack = self.maxmemory // 100 if outcome == ROOM_ELSEWHERE else 0
            ks.evict_at = ks.stored_bytes + max(slack, self.maxmemory - self.used_memory())
        else:
            ks.evict_at = NO_LIMIT
        if over != self.over_maxmemory:
            self.over_maxmemory = over
            for session in self.clients.values():
                session.refresh_fast()

    # -- persistence ------------------------------------------------------------

    def open_journal(self, image, replay, keys=None, images=None) -> Journal:
        """Load ``dir``'s snapshot and commit logs through ``replay``, then open the
        log for appending; changes are logged as ``image(key)`` from now on (a
        round's as ``images(marked)`` if given, see Journal), and snapshots hold
        ``image(key)`` of every key ``keys()`` lists (default: the keyspace's keys)."""
        config = self.config
        journal = Journal(
            config["dir"], image, images=images, appendonly=config["appendonly"], fsync=config["appendfsync"],
            truncate_torn=config["aof-load-truncated"], truncate_corrupt=config["aof-load-corrupt-truncate"],
        )
        entries = journal.load(replay)
        if entries:
            log.info("loaded %d journal entries in %.3f s", entries, journal.load_seconds)
        journal.open()
        self.journal = journal
        self.keys_loaded = self.keyspace.dbsize()
        self.rewrites = Rewrites(journal, keys or self.keyspace.iter_keys, config, self.start_background)
        self.round_hooks.insert(0, self.persist_now)  # before replies and replica traffic
        return journal

    def persist_now(self) -> None:
        """Write what changed since the last commit to the log (fsynced under
        ``appendfsync always``).

        When that fails, writes are refused (``-MISCONF``) from now on and
        LogWriteError is raised: the round's replies may acknowledge writes that are
        not in the log, so the caller drops them.  While writes are refused already,
        a failed retry raises nothing: the round holds no acknowledgement of a write
        (they were refused), and its replies (errors, reads, PING's -MISCONF) go out.
        """
        journal = self.journal
        if journal is None:
            return
        refusing = self.write_refusal is not None
        try:
            journal.commit()
        except LogWriteError as exc:
            for listener in self.commit_listeners:
                listener(False)
            if not refusing:
                log.error("cannot write the commit log, refusing writes until it works again: %s", exc)
                self._refuse_writes(journal.error_text())
                raise
            self._refuse_writes(journal.error_text())
            return
        for listener in self.commit_listeners:
            listener(True)
        if refusing and not journal.failed:
            log.warning("the commit log is writable again: accepting writes")
            self._refuse_writes(None)

    def _refuse_writes(self, refusal: str | None) -> None:
        if refusal != self.write_refusal:
            self.write_refusal = refusal
            for session in self.clients.values():
                session.refresh_fast()

    def _close_idle_clients(self) -> None:
        now = trio.current_time()
        timeout = self.config["timeout"]
        blocking = self.blocking
        for session in list(self.clients.values()):
            if session.commands_processed != session.commands_seen_by_cron:
                session.commands_seen_by_cron = session.commands_processed
                session.last_interaction = now
            elif timeout and session.last_interaction < now - timeout and not blocking.is_blocked(session):
                session.kill()  # as in Redis, a blocked client is never idle


async def serve_node(node: Node, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run ``node`` until cancelled; ``task_status.started`` reports the bound port."""
    config = node.config
    keep_big_blocks_in_mmaps()  # freed dictionary tables go back to the system (see allocator)
    os.makedirs(config["dir"], exist_ok=True)
    if not (config["cluster-enabled"] and config["replication-factor"] > 1):
        # Replicated nodes journal version records instead (see start_replication).
        journal_plain_keyspace(node)
    listener = await open_listener(node.config["bind"], node.config["port"])
    node.port = listener.getsockname()[1]
    with listener:
        try:
            async with trio.open_nursery() as nursery:
                node._nursery = nursery
                await nursery.start(node.run_cron)
                if node.journal is not None:
                    await nursery.start(node.journal.run)
                if config["cluster-enabled"]:
                    await nursery.start(serve_cluster, node)
                await nursery.start(serve_clients, node, listener)
                tune_for_serving()  # started: fewer young collections under load (see gc_policy)
                log.info("respkv %s ready to accept connections on %s:%d", __version__, config["bind"], node.port)
                task_status.started(node.port)
                if node._stop_requested:  # asked to stop while starting
                    nursery.cancel_scope.cancel()
        finally:
            node._nursery = None
            if node.journal is not None:
                try:
                    node.journal.close()  # what is buffered, fsynced, at shutdown
                except LogWriteError as exc:  # logged, as Redis does; never acknowledged
                    log.error("Fail to write or fsync the commit log at shutdown: %s", exc)
            log.info("respkv is now ready to exit, bye bye...")


def start_replication(node: Node, state: ClusterState, bus: ClusterBus) -> Coordinator:
    """Install versioned, replicated request execution on ``node`` (see replication):
    load the version records from ``dir`` and log their changes from now on, as a
    new incarnation of this node (see replication.incarnation)."""
    incarnation = Incarnation(node.config["dir"])
    store = VersionStore(node.keyspace, actor_of(state.myself, incarnation.advance()), node.config["max-siblings"])
    store.convergent = node.config["convergent-types"]
    coordinator = Coordinator(node, state, bus, store)
    replay = RecordReplay(store, coordinator.forgetting.expired, coordinator.handoff.replay,
                          coordinator.replica.run_shipped, command_replay(node))
    journal = node.open_journal(record_image(store), replay, keys=store.keys)
    coordinator.handoff.attach(journal)  # hints are logged, and held by snapshots
    anti_entropy = coordinator.anti_entropy = AntiEntropy(node, state, bus, store, coordinator)
    anti_entropy.loaded(store.keys())
    store.on_moved = anti_entropy.trees.moved  # every later change of a record, as it is made
    store.on_change = record_marker(journal)
    store.on_operation = operation_marker(journal)
    for key in replay.adopt():  # values of a log written without replication
        journal.mark(key)
    node.commit_listeners.append(coordinator.local_commit)

    def flushed() -> None:
        """FLUSHALL/FLUSHDB: no records, and a new incarnation (its counters are gone)."""
        store.clear()
        store.actor = actor_of(state.myself, incarnation.advance())
        journal.mark_flushed()
        anti_entropy.flushed()

    node.keyspace.on_flush = flushed
    node.keyspace.on_expire = coordinator.forgetting.expired
    node.add_key_observer(coordinator.observe)
    node.keyspace.command_log = coordinator.equivalents
    ownership = coordinator.ownership = OwnershipHandoff(node, state, bus, store, anti_entropy, coordinator.holders,
                                                         coordinator.handoff)
    for operations, handler in ((REPLICATION_OPERATIONS, coordinator.handle),
                                (ANTI_ENTROPY_OPERATIONS, anti_entropy.handle), (OWNERSHIP_OPERATIONS, ownership.handle)):
        node.bus_operations.update(dict.fromkeys(operations, handler))
    node.replication = coordinator
    node._configure_eviction()
    node.round_hooks.append(coordinator.flush)
    state.replicated = True
    return coordinator


def cluster_bus_port(config: Config, client_port: int) -> int:
    """The bus port to bind: ``cluster-port``, else client port + 10000.

    When the client port was picked by the system (``port 0``) the bus port is
    too, since ``+ 10000`` of an ephemeral port may be out of range or taken.
    """
    if config["cluster-port"]:
        return config["cluster-port"]
    if not config["port"]:
        return 0
    if client_port + BUS_PORT_OFFSET > 65535:
        raise ConfigError(f"port {client_port} leaves no room for the bus port (+{BUS_PORT_OFFSET}): set cluster-port")
    return client_port + BUS_PORT_OFFSET


async def serve_cluster(node: Node, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run ``node`` as a cluster member until cancelled (see the module doc).

    Reports started once ``node.cluster`` is installed and the bus and gossip run;
    joining the ``cluster_join`` seeds goes on in the background until one answers.
    """
    config = node.config
    seeds = [parse_address(text) for text in node.cluster_join]
    node_id = load_or_create_node_id(config["dir"])
    members_path = config_file_path(config["dir"], config["cluster-config-file"])
    known = restore(members_path, node_id, config["cluster-vnodes"])
    secret, secret_source = load_cluster_secret(config["dir"], config["cluster-secret"], config["cluster-secret-file"])
    log.info("cluster bus secret from %s", secret_source)
    host = await announce_ip(config["bind"], config["cluster-announce-ip"])
    bus_socket = await open_listener(config["bind"], cluster_bus_port(config, node.port))
    with bus_socket:  # closed however this ends (the bus closes it too on exit)
        bus_port = bus_socket.getsockname()[1]
        state = ClusterState(
            Member(node_id, host, node.port, bus_port, 0 if is_leaving(config["dir"]) else config["cluster-weight"]),
            rf=config["replication-factor"],
            vnodes=config["cluster-vnodes"],
            routing=config["cluster-routing"],
            known=known,
        )
        recorder = MembershipRecorder(members_path, state)
        recorder.attach()
        rejoining = len(state.membership.active_ids()) > 1
        if rejoining:
            log.info("restored %d cluster members from %s", len(state.membership.active_ids()), members_path)
        bus = ClusterBus(node_id, node.handle_bus, secret)
        gossip = Gossip(state, bus, node_timeout=config["cluster-node-timeout"] / 1000)
        for op in GOSSIP_OPERATIONS:
            node.bus_operations[op] = gossip.handle
        node.pubsub.join_cluster(bus, node.bus_operations)
        # Loads the version records before any replica traffic can arrive.
        coordinator = start_replication(node, state, bus) if config["replication-factor"] > 1 else None
        async with trio.open_nursery() as nursery:
            await nursery.start(bus.serve, trio.SocketListener(bus_socket))
            await nursery.start(gossip.run)
            await nursery.start(recorder.run)
            if state.routing == PROXY:  # the forwarding connections live in this nursery
                await nursery.start(proxy_pool(node).run)
            if coordinator is not None:
                await nursery.start(node.journal.run)
                await nursery.start(coordinator.run)
                await nursery.start(coordinator.anti_entropy.run)
                await nursery.start(coordinator.ownership.run)
            node.cluster, node.cluster_gossip, node.cluster_bus = state, gossip, bus
            node.mode = "cluster"
            if seeds:
                await nursery.start(gossip.join, seeds)
            if rejoining:
                await nursery.start(rejoin, gossip)
            log.info("cluster node %s at %s:%d, bus port %d", node_id, host, node.port, bus_port)
            task_status.started()
