"""Client eviction (``maxmemory-clients``, ``CLIENT NO-EVICT``) against a respkv node
and a real redis-server, with the same steps: connections holding a command that
is still arriving are closed, the biggest first, while all clients together hold
more than the bound; a connection with NO-EVICT on is kept."""

from __future__ import annotations

import socket

import pytest
import redis

from .conftest import NodeThread
from .test_pubsub import until
from .test_tracking import port  # noqa: F401 (the fixture: a respkv node, then a redis-server)

ERROR_PREFIX = "CONFIG SET failed (possibly related to argument 'maxmemory-clients') - "


def test_maxmemory_clients_values_as_redis(port):
    r = redis.Redis(port=port)
    try:
        assert r.config_get("maxmemory-clients") == {"maxmemory-clients": "0"}
        for value, shown in (("10%", "10%"), ("1mb", "1048576"), ("5KB", "5120"), ("0%", "0"), ("0", "0")):
            r.config_set("maxmemory-clients", value)
            assert r.config_get("maxmemory-clients") == {"maxmemory-clients": shown}
        for value, message in (("101%", "percentage argument must be less or equal to 100"),
                               ("-1", "argument must be a memory or percent value"),
                               ("abc", "argument must be a memory or percent value"),
                               ("\u00b2%", "argument must be a memory or percent value"),
                               ("\u0663", "argument must be a memory or percent value")):
            with pytest.raises(redis.ResponseError) as raised:
                r.config_set("maxmemory-clients", value)
            assert str(raised.value) == ERROR_PREFIX + message
    finally:
        r.config_set("maxmemory-clients", "0")
        r.close()


def open_partial_set(port: int, held: int, no_evict: bool = False) -> socket.socket:
    """A connection that sent ``held`` bytes of a SET value still arriving."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if no_evict:
        sock.sendall(b"CLIENT NO-EVICT on\r\n")
        assert sock.recv(16) == b"+OK\r\n"
    sock.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nheld\r\n$%d\r\n" % (held + 10) + b"x" * held)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.settimeout(0.05)
        return sock.recv(16) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def tidy_up(admin: redis.Redis, *socks: socket.socket | None) -> None:
    """Close the test's raw connections, give the server back its defaults for
    the next test of the module, and close ``admin``."""
    for sock in socks:
        if sock is not None:
            sock.close()
    admin.config_set("maxmemory-clients", "0")
    admin.config_set("maxmemory", "0")
    admin.config_set("maxmemory-policy", "noeviction")
    admin.flushall()
    admin.close()


@pytest.mark.parametrize("bound", ["1mb", "10%"])
def test_the_biggest_client_is_closed_and_a_no_evict_one_kept(port, bound):
    admin = redis.Redis(port=port)
    exempt = big = None
    try:
        admin.config_set("maxmemory", "10mb")
        evicted_before = admin.info("stats")["evicted_clients"]
        exempt = open_partial_set(port, 600_000, no_evict=True)
        until(lambda: any(c["flags"] == "e" for c in admin.client_list()))
        admin.config_set("maxmemory-clients", bound)
        big = open_partial_set(port, 800_000)
        until(lambda: closed_by_server(big))
        assert admin.info("stats")["evicted_clients"] == evicted_before + 1
        exempt.sendall(b"y" * 10 + b"\r\n")  # the rest of its value: it was kept, and is served
        exempt.settimeout(5)
        assert exempt.recv(16) == b"+OK\r\n"
        assert admin.strlen("held") == 600_010
    finally:
        tidy_up(admin, exempt, big)


def test_clients_holding_nothing_are_not_closed(tmp_path):
    """Over the bound only because of an exempt connection, the others (holding
    nothing here) stay: closing them would free nothing (Redis closes them, its
    connections each holding buffers of their own)."""
    node = NodeThread(tmp_path, appendonly=False).start()
    admin = redis.Redis(port=node.port)
    exempt = None
    try:
        exempt = open_partial_set(node.port, 2_000_000, no_evict=True)
        until(lambda: any(c["flags"] == "e" and int(c["qbuf"]) > 1_000_000 for c in admin.client_list()))
        admin.config_set("maxmemory-clients", "1mb")
        other = redis.Redis(port=node.port)
        assert other.ping()
        big = open_partial_set(node.port, 800_000)
        until(lambda: closed_by_server(big))  # the check ran, with the others connected
        big.close()
        assert other.ping() and admin.ping()
        assert admin.info("stats")["evicted_clients"] == 1
        other.close()
    finally:
        if exempt is not None:
            exempt.close()
        admin.close()
        node.stop()


def test_what_clients_hold_counts_in_used_memory_and_makes_room(port):
    """As in Redis, a command still arriving takes room in ``used_memory``: under
    ``maxmemory`` keys are evicted for it, and the room comes back when it goes."""
    admin = redis.Redis(port=port)
    sock = None
    try:
        # respkv adds up what clients hold once a housekeeping tick: wait for the
        # previous test's connections to be out of the figure.
        until(lambda: admin.info("memory")["mem_clients_normal"] < 100_000)
        admin.mset({f"filler:{n}": b"v" * 1000 for n in range(3000)})
        used = admin.info("memory")["used_memory"]
        admin.config_set("maxmemory-policy", "allkeys-random")
        admin.config_set("maxmemory", str(used + 500_000))
        sock = open_partial_set(port, 1_000_000)
        until(lambda: admin.info("memory")["used_memory"] > used + 700_000 or admin.dbsize() < 3000)
        until(lambda: admin.set("probe", "x") and admin.info("stats")["evicted_keys"] > 0)
        assert admin.dbsize() < 3000
        admin.config_set("maxmemory", "0")
        sock.close()
        sock = None
        until(lambda: admin.info("memory")["used_memory"] < used)
    finally:
        tidy_up(admin, sock)


def test_arguments_already_parsed_count_as_redis_counts_them(port):
    """A multi-argument command still arriving holds its complete arguments too
    (``argv-mem``), not only the unparsed rest (``qbuf``)."""
    admin = redis.Redis(port=port)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        admin.config_set("maxmemory-clients", "1mb")
        sock.sendall(b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$900000\r\n" + b"x" * 900_000
                     + b"\r\n$1\r\nb\r\n$500000\r\n" + b"y" * 400_000)
        until(lambda: closed_by_server(sock))
        assert admin.info("stats")["evicted_clients"] >= 1
    finally:
        tidy_up(admin, sock)


def test_a_bound_below_128k_is_raised_to_it(port):
    admin = redis.Redis(port=port)
    small = large = None
    try:
        evicted_before = admin.info("stats")["evicted_clients"]
        admin.config_set("maxmemory-clients", "1000")
        assert admin.config_get("maxmemory-clients") == {"maxmemory-clients": "1000"}
        small = open_partial_set(port, 40_000)
        large = open_partial_set(port, 200_000)
        until(lambda: closed_by_server(large))
        assert not closed_by_server(small)
        assert admin.info("stats")["evicted_clients"] == evicted_before + 1
    finally:
        tidy_up(admin, small, large)


def test_a_large_command_does_not_count_twice_once_run(tmp_path):
    """While it arrived, a 2 MB SET was counted as what its client holds; once
    run it is in the keyspace, and the next write must not see both, though the
    regular count (one housekeeping tick a second here) comes late.  respkv only:
    redis-server's query buffer grows past the value's size, so the same headroom
    refuses the SET itself there."""
    node = NodeThread(tmp_path, appendonly=False).start()
    admin = redis.Redis(port=node.port)
    sock = None
    try:
        admin.config_set("hz", "1")
        used = admin.info("memory")["used_memory"]
        admin.config_set("maxmemory", str(used + 3_000_000))
        sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$2000000\r\n" + b"x" * 1_500_000)
        until(lambda: admin.info("memory")["used_memory"] > used + 1_000_000)
        sock.sendall(b"x" * 500_000 + b"\r\n")
        assert sock.recv(16) == b"+OK\r\n"
        assert admin.set("after", "x")  # -OOM if the 2 MB counted twice
    finally:
        if sock is not None:
            sock.close()
        admin.close()
        node.stop()
