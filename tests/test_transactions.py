"""MULTI/EXEC/DISCARD/WATCH/UNWATCH through redis-py and raw sockets."""

from __future__ import annotations

import pytest
import redis

from .test_session import raw_client, read_exactly


def test_exec_runs_queued_commands_in_order(r):
    with r.pipeline(transaction=True) as pipe:
        pipe.set("a", "1").incr("a").get("a").incr("missing-type-ok")
        assert pipe.execute() == [True, 2, b"2", 1]


def test_errors_inside_exec_do_not_abort_the_rest(r):
    r.set("s", "text")
    with r.pipeline(transaction=True) as pipe:
        pipe.incr("s").set("t", "1")
        result = pipe.execute(raise_on_error=False)
    assert isinstance(result[0], redis.ResponseError)
    assert result[1] is True
    assert r.get("t") == b"1"


def test_queuing_error_aborts_with_execabort(node):
    with raw_client(node) as sock:
        sock.sendall(b"MULTI\r\nSET k v\r\nGET\r\nNOSUCH\r\nEXEC\r\nGET k\r\n")
        expected = (
            b"+OK\r\n+QUEUED\r\n"
            b"-ERR wrong number of arguments for 'get' command\r\n"
            b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n"
            b"-EXECABORT Transaction discarded because of previous errors.\r\n"
            b"$-1\r\n"
        )
        assert read_exactly(sock, len(expected)) == expected


def test_state_errors(node):
    with raw_client(node) as sock:
        sock.sendall(b"EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nWATCH x\r\nPING\r\nDISCARD\r\nPING\r\n")
        expected = (
            b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n"
            b"-ERR MULTI calls can not be nested\r\n-ERR WATCH inside MULTI is not allowed\r\n"
            b"+QUEUED\r\n+OK\r\n+PONG\r\n"
        )
        assert read_exactly(sock, len(expected)) == expected


def test_watch_aborts_when_another_client_changes_the_key(node):
    a, b = node.client(), node.client()
    a.set("balance", 10)
    with a.pipeline(transaction=True) as pipe:
        pipe.watch("balance")
        assert int(pipe.get("balance")) == 10
        b.set("balance", 99)
        pipe.multi()
        pipe.set("balance", 11)
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert a.get("balance") == b"99"


def test_watch_succeeds_when_nothing_changed_and_unwatch(node):
    a, b = node.client(), node.client()
    a.set("w", 1)
    with a.pipeline(transaction=True) as pipe:
        pipe.watch("w")
        pipe.multi()
        pipe.incr("w")
        assert pipe.execute() == [2]
    with a.pipeline(transaction=True) as pipe:
        pipe.watch("w")
        pipe.unwatch()
        b.incr("w")
        pipe.multi()
        pipe.incr("w")
        assert pipe.execute() == [4]


def test_watched_key_expiring_counts_as_a_change(node):
    a = node.client(protocol=2)
    a.set("soon", "x", px=50)
    with a.pipeline(transaction=True) as pipe:
        pipe.watch("soon")
        ks = node.node.keyspace
        # Move the deadline into the past rather than sleeping.
        ks.set_deadline(b"soon", ks.clock_ms() - 1)
        pipe.multi()
        pipe.set("other", 1)
        with pytest.raises(redis.WatchError):
            pipe.execute()


def test_discard_and_reset_leave_no_state(node):
    a = node.client(protocol=2)
    with raw_client(node) as sock:
        sock.sendall(b"WATCH k\r\nMULTI\r\nSET k 1\r\nRESET\r\nSET k 2\r\n")
        expected = b"+OK\r\n+OK\r\n+QUEUED\r\n+RESET\r\n+OK\r\n"
        assert read_exactly(sock, len(expected)) == expected
    assert a.get("k") == b"2"
    assert not node.node.watches.by_key
