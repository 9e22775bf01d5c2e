"""The cluster bus over real loopback sockets: handshake, requests, batching, failures."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from respkv.peer import wire
from respkv.peer.bus import ClusterBus, PeerError, PeerUnavailable

A_ID = "a" * 40
B_ID = "b" * 40
SECRET = b"the cluster secret"


def echo_handler(log):
    def handler(peer_id, op, args):
        log.append((peer_id, op, args))
        if op == b"ECHO":
            return args
        if op == b"SLOW":
            return _slow(args)
        if op == b"FAIL":
            raise ValueError("no such thing")
        return []

    return handler


async def _slow(args):
    await trio.sleep(float(args[0]))
    return [b"done"]


async def start_bus(nursery, node_id, handler, secret=SECRET):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    bus = ClusterBus(node_id, handler, secret)
    await nursery.start(bus.serve, listeners[0])
    port = listeners[0].socket.getsockname()[1]
    return bus, port


async def test_request_answer_notify_and_errors():
    log_a, log_b = [], []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bus_a, _ = await start_bus(nursery, A_ID, echo_handler(log_a))
            bus_b, port_b = await start_bus(nursery, B_ID, echo_handler(log_b))
            assert await bus_a.dial("127.0.0.1", port_b) == B_ID
            await trio.testing.wait_all_tasks_blocked()
            link = bus_a.link(B_ID)
            assert link.connected
            assert await link.request(b"ECHO", [b"x", b"\r\n"]) == [b"x", b"\r\n"]
            # The acceptor learned who dialed and can use the same connection back.
            assert bus_b.link(A_ID).connected
            assert await bus_b.link(A_ID).request(b"ECHO", [b"back"]) == [b"back"]
            assert link.notify(b"GOSSIP", [b"1"])
            with pytest.raises(PeerError, match="no such thing"):
                await link.request(b"FAIL")
            # Answers may come back out of order; each finds its request.
            results = {}

            async def call(name, delay):
                results[name] = await link.request(b"SLOW", [delay])

            async with trio.open_nursery() as calls:
                calls.start_soon(call, "slow", b"0.2")
                calls.start_soon(call, "fast", b"0")
            assert results == {"slow": [b"done"], "fast": [b"done"]}
            assert (A_ID, b"GOSSIP", [b"1"]) in log_b
            nursery.cancel_scope.cancel()


async def test_many_concurrent_requests_share_sends():
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            bus_a, _ = await start_bus(nursery, A_ID, echo_handler([]))
            bus_b, port_b = await start_bus(nursery, B_ID, echo_handler([]))
            await bus_a.dial("127.0.0.1", port_b)
            link = bus_a.link(B_ID)
            answers = []

            async def call(i):
                answers.append(await link.request(b"ECHO", [b"%d" % i]))

            async with trio.open_nursery() as calls:
                for i in range(500):
                    calls.start_soon(call, i)
            assert sorted(int(a[0]) for a in answers) == list(range(500))
            assert link.sent_frames == 500
            # The requests reached B in a few reads; the answers to each read's
            # requests left in one send (the link corks while dispatching them).
            back = bus_b.link(A_ID)
            assert back.sent_frames == 500
            assert back.sends < 100, back.sends
            nursery.cancel_scope.cancel()


async def test_pending_requests_fail_when_the_peer_goes_away():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bus_a, _ = await start_bus(nursery, A_ID, echo_handler([]))
            async with trio.open_nursery() as b_nursery:
                bus_b, port_b = await start_bus(b_nursery, B_ID, echo_handler([]))
                await bus_a.dial("127.0.0.1", port_b)
                link = bus_a.link(B_ID)
                outcome = {}

                async def call():
                    try:
                        await link.request(b"SLOW", [b"30"], timeout=20)
                    except PeerUnavailable as exc:
                        outcome["error"] = exc

                nursery.start_soon(call)
                await trio.testing.wait_all_tasks_blocked()
                b_nursery.cancel_scope.cancel()  # B stops: its end of the link closes
            await link.wait_closed()
            await trio.testing.wait_all_tasks_blocked()
            assert "error" in outcome
            assert not link.connected
            with pytest.raises(PeerUnavailable):
                await link.request(b"ECHO")
            nursery.cancel_scope.cancel()


async def test_the_smaller_id_redials_a_restarted_peer():
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            bus_a, _ = await start_bus(nursery, A_ID, echo_handler([]))
            port_b = 0
            for _ in range(2):  # B comes up, goes down, comes up again on the same port
                listeners = await trio.open_tcp_listeners(port_b, host="127.0.0.1")
                port_b = listeners[0].socket.getsockname()[1]
                bus_a.addresses[B_ID] = ("127.0.0.1", port_b)
                async with trio.open_nursery() as b_nursery:
                    bus_b = ClusterBus(B_ID, echo_handler([]), SECRET)
                    await b_nursery.start(bus_b.serve, listeners[0])
                    bus_a.keep_connected(B_ID)
                    while not bus_a.link(B_ID).connected:
                        await trio.sleep(0.01)
                    assert await bus_a.link(B_ID).request(b"ECHO", [b"hi"]) == [b"hi"]
                    b_nursery.cancel_scope.cancel()
                await bus_a.link(B_ID).wait_closed()
            nursery.cancel_scope.cancel()


async def test_a_stranger_without_handshake_is_refused():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bus_b, port_b = await start_bus(nursery, B_ID, echo_handler([]))
            async with await trio.open_tcp_stream("127.0.0.1", port_b) as stream:
                await stream.send_all(wire.encode(wire.REQUEST, 1, b"ECHO", [b"x"]))
                assert await stream.receive_some(100) == b""  # closed without an answer
            assert not bus_b.links
            nursery.cancel_scope.cancel()


def test_frames_round_trip():
    reader = wire.new_reader()
    frame = wire.encode(wire.REQUEST, 42, b"PUT", [b"k", b"", b"\x00\xff"])
    assert [wire.split(f) for f in reader.parse(frame)] == [(wire.REQUEST, 42, b"PUT", [b"k", b"", b"\x00\xff"])]
    with pytest.raises(wire.BusProtocolError):
        wire.split([b"X", b"1", b"op"])


def test_frame_reader_takes_frames_split_anywhere():
    frames = [
        wire.encode(wire.REQUEST, 7, b"REPL", [b"k", b"", b"\r\n*99999999\r\n$2147483648\r\n"]),
        wire.encode(wire.ANSWER, 7, b""),
    ]
    data = b"".join(frames)
    for size in (1, 2, 3, 7, len(data)):
        reader = wire.new_reader()
        got = []
        for i in range(0, len(data), size):
            got += reader.parse(data[i : i + size])
        assert [wire.split(f) for f in got] == [
            (wire.REQUEST, 7, b"REPL", [b"k", b"", b"\r\n*99999999\r\n$2147483648\r\n"]),
            (wire.ANSWER, 7, b"", []),
        ]
        assert reader.idle


@pytest.mark.parametrize("data", [
    b":1\r\n", b"*1\r\n:5\r\n", b"*1\r\n*1\r\n$1\r\na\r\n", b"!oops\r\n", b"PING\r\n",
    b"*1\r\n>536870913\r\n", b"*1\r\n%1\r\n", b"*2\r\n+REPL\r\n+k\r\n",
])
def test_frame_reader_refuses_what_is_not_an_array_of_bulk_strings(data):
    with pytest.raises(wire.BusProtocolError):
        wire.new_reader().parse(data)


def test_frame_reader_skips_empty_arrays():
    assert wire.new_reader().parse(b"*0\r\n*3\r\n$1\r\nN\r\n$1\r\n0\r\n$4\r\nPING\r\n") == [[b"N", b"0", b"PING"]]


def test_frame_reader_bounds_an_unfinished_frame():
    with pytest.raises(wire.BusProtocolError, match="invalid bulk length"):
        wire.FrameReader(max_buffered=1000).parse(b"*1\r\n$2147483648\r\n")  # announced beyond the bound
    reader = wire.FrameReader(max_buffered=1000)
    assert reader.parse(b"*2\r\n$900\r\n" + b"x" * 900 + b"\r\n$900\r\n") == []  # announced, not allocated
    with pytest.raises(wire.BusProtocolError, match="exceeds 1000 bytes"):
        reader.parse(b"x" * 200)


async def test_a_failing_answer_callback_does_not_end_the_link(caplog):
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            bus_a, _ = await start_bus(nursery, A_ID, echo_handler([]))
            _, port_b = await start_bus(nursery, B_ID, echo_handler([]))
            await bus_a.dial("127.0.0.1", port_b)
            link = bus_a.link(B_ID)
            called = trio.Event()

            def broken(answer, error):
                called.set()
                raise RuntimeError("bug in a callback")

            assert link.request_nowait(b"ECHO", [b"x"], broken)
            await called.wait()
            assert link.connected
            assert await link.request(b"ECHO", [b"still here"]) == [b"still here"]
            assert "callback failed" in caplog.text
            nursery.cancel_scope.cancel()


def _repl_frames(count: int, byte_range: int = 256) -> list[bytes]:
    """REPL frames like a coordinator's, with binary parents and records (bytes
    below ``byte_range``: all of them make some chunks fail the reader's guard)."""
    frames = []
    for n in range(count):
        args = []
        for k in range(1 + n % 40):
            parent = bytes([n % byte_range, 36, 13, 10, 42]) * 3
            args += [b"key:{a}%08d" % (n * 100 + k), parent, b"$\r\n" * (k % 5) + b"xxx"]
        frames.append(wire.encode(wire.REQUEST, n + 1, b"REPL", args))
    return frames


@pytest.mark.parametrize("size", [1, 5, 1448, 4096, 65536])
def test_frame_reader_takes_streams_cut_inside_frames(size):
    frames = _repl_frames(60)
    data = b"".join(frames)
    expected = wire.new_reader().parse(data)
    assert len(expected) == len(frames)
    # Every cut in the first frames, then the stream in chunks of ``size``.
    for cut in range(1, len(frames[0]) + len(frames[1]), 1 if size == 1 else 3):
        reader = wire.new_reader()
        assert reader.parse(data[:cut]) + reader.parse(data[cut:]) == expected
        assert reader.idle
    reader = wire.new_reader()
    got = []
    for i in range(0, len(data), size):
        got += reader.parse(data[i : i + size])
    assert got == expected and reader.idle


@pytest.fixture
def exact_steps(monkeypatch) -> list:
    """Grows by one for every request the readers' exact path parses."""
    from respkv.protocol.reader import RequestReader

    exact: list = []
    original = RequestReader._exact_next

    def counting(self):
        exact.append(1)
        return original(self)

    monkeypatch.setattr(RequestReader, "_exact_next", counting)
    return exact


def test_frame_reader_keeps_tails_on_the_fast_path(exact_steps):
    """Chunks that end inside frames (large REPL frames over loopback) are parsed
    by hiredis with the tail kept, not handed to the exact path."""
    frames = _repl_frames(200, byte_range=32)
    data = b"".join(frames)
    reader = wire.new_reader()
    got = []
    for i in range(0, len(data), 8000):
        got += reader.parse(data[i : i + 8000])
    assert len(got) == len(frames) and reader.idle
    assert not exact_steps


def test_frame_reader_keeps_binary_records_and_long_answers_on_the_fast_path(exact_steps):
    """Records whose timestamps hold a line feed then ``=``, or a ``*0``, and a
    whole hash tree listing of more than 9,999 elements, are parsed by hiredis
    (the client guard would send each whole chunk to the exact path)."""
    record = b"\x01\x00$\x00\x04\x00\x00\x00\n=\"R\xa2\x01\x00\x00*05\x00xxx"
    frames = [wire.encode(wire.REQUEST, n, b"REPL", [b"key:{a}%d" % n, b"", record] * 50) for n in range(1, 40)]
    data = b"".join(frames)
    reader = wire.new_reader()
    got = []
    for i in range(0, len(data), 65536):  # what the bus receives at most at once
        got += reader.parse(data[i : i + 65536])
    got += reader.parse(wire.encode(wire.ANSWER, 40, b"", [b"k%d" % i for i in range(12_339)]))
    assert [wire.split(f)[1] for f in got] == list(range(1, 41)) and reader.idle
    assert got[0][3:6] == [b"key:{a}1", b"", record]
    assert not exact_steps


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_frame_reader_guards_a_header_cut_by_the_end_of_a_kept_tail(cut):
    """An array header split between a kept tail and the next chunk is seen whole
    by the guard, which leaves it to the exact path (hiredis would allocate from it)."""
    head = wire.encode(wire.REQUEST, 1, b"REPL", [b"k", b"", b"v"])
    header = b"*99999999\r\n"
    reader = wire.new_reader()
    assert len(reader.parse(head + header[:cut])) == 1
    assert reader.parse(header[cut:]) == []
    assert reader._reader._exact  # not hiredis
