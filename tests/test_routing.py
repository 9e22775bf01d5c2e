"""Pure tests of cluster routing: request slots, placement, the fast path's rules,
and the proxy's reply framing.

Key positions come from the command table (the same one that answers ``COMMAND``),
so these tables also pin down that each command's metadata names its keys.
Placements use preference lists laid out by hand, as ``test_topology`` does.
"""

from __future__ import annotations

from binascii import crc_hqx

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from respkv.cluster.failure import NodeState
from respkv.cluster.membership import Member, Membership
from respkv.cluster.proxy import ProxyError, ReplyFramer, encode_request
from respkv.cluster.routing import (
    CLUSTER_DOWN_ERROR,
    CROSS_SLOT,
    CROSSSLOT_ERROR,
    NO_KEYS,
    SLOT_NOT_SERVED_ERROR,
    cluster_ok,
    fast_spec,
    place,
    served_slots,
    request_slot,
    requests_slot,
)
from respkv.cluster.state import ClusterState
from respkv.cluster.topology import Topology
from respkv.commands.keyspecs import command_keys, request_keys
from respkv.keyspace.slots import SLOT_COUNT, key_slot
from respkv.node import build_command_table

from .test_topology import TableRing

TABLE = build_command_table()


def spec_for(args: list[bytes]):
    spec = TABLE.lookup(args[0])
    if spec.subcommands:
        spec = spec.subcommands[args[1].lower()]
    return spec


def slot_of(*words: str) -> int:
    args = [w.encode() for w in words]
    return request_slot(spec_for(args), args)


def keys_of(*words: str) -> list[bytes]:
    args = [w.encode() for w in words]
    return request_keys(spec_for(args), args)


# Keys in different slots, and keys sharing one through a hash tag.
A, B = "a", "b"  # slots 15495 and 3300
assert key_slot(b"a") != key_slot(b"b")


# -- slots of requests ------------------------------------------------------------

#: Keys and their hash slots (DESIGN.md's vectors: hash tags, empty and nested braces).
SLOT_VECTORS = [
    ("123456789", 12739),
    ("foo", 12182),
    ("user:{42}:cart", 8000),
    ("x", 16287),
    ("{user1000}.following", 3443),
    ("foo{}{bar}", 8363),
    ("foo{{bar}}zap", 4015),
    ("foo{bar}{zap}", 5061),
]


@pytest.mark.parametrize("key, slot", SLOT_VECTORS)
def test_single_key_commands_use_the_design_vectors(key, slot):
    assert slot_of("GET", key) == slot
    assert slot_of("set", key, "v") == slot
    assert slot_of("HSET", key, "f", "v") == slot
    assert slot_of("LPUSH", key, "x", "y") == slot


@pytest.mark.parametrize(
    "request_words, keys",
    [
        (["GET", "k"], ["k"]),
        (["SET", "k", "v", "EX", "10"], ["k"]),
        (["MGET", "k1", "k2", "k3"], ["k1", "k2", "k3"]),
        (["MSET", "k1", "v1", "k2", "v2"], ["k1", "k2"]),
        (["MSETNX", "k1", "v1", "k2", "v2"], ["k1", "k2"]),
        (["DEL", "k1", "k2"], ["k1", "k2"]),
        (["UNLINK", "k1"], ["k1"]),
        (["EXISTS", "k1", "k1"], ["k1", "k1"]),
        (["RENAME", "src", "dst"], ["src", "dst"]),
        (["SMOVE", "src", "dst", "m"], ["src", "dst"]),
        (["LMOVE", "src", "dst", "LEFT", "RIGHT"], ["src", "dst"]),
        (["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"], ["src", "dst"]),
        (["RPOPLPUSH", "src", "dst"], ["src", "dst"]),
        (["SINTERSTORE", "dst", "s1", "s2"], ["dst", "s1", "s2"]),
        (["BLPOP", "l1", "l2", "0"], ["l1", "l2"]),
        (["BZPOPMIN", "z1", "z2", "1.5"], ["z1", "z2"]),
        (["ZRANGESTORE", "dst", "src", "0", "-1"], ["dst", "src"]),
        (["OBJECT", "ENCODING", "k"], ["k"]),
        (["WATCH", "k1", "k2"], ["k1", "k2"]),
        # Movable keys, found by key specs (as COMMAND GETKEYS finds them).
        (["ZUNIONSTORE", "dst", "2", "z1", "z2", "WEIGHTS", "1", "2"], ["dst", "z1", "z2"]),
        (["ZINTERSTORE", "dst", "1", "z1"], ["dst", "z1"]),
        (["ZDIFFSTORE", "dst", "2", "z1", "z2"], ["dst", "z1", "z2"]),
        (["ZUNION", "2", "z1", "z2", "WITHSCORES"], ["z1", "z2"]),
        (["ZINTERCARD", "2", "z1", "z2", "LIMIT", "3"], ["z1", "z2"]),
        (["SINTERCARD", "3", "s1", "s2", "s3"], ["s1", "s2", "s3"]),
        (["LMPOP", "2", "l1", "l2", "LEFT", "COUNT", "2"], ["l1", "l2"]),
        (["BLMPOP", "0.5", "2", "l1", "l2", "RIGHT"], ["l1", "l2"]),
        (["ZMPOP", "1", "z1", "MIN"], ["z1"]),
        (["BZMPOP", "0", "2", "z1", "z2", "MAX"], ["z1", "z2"]),
    ],
)
def test_request_keys(request_words, keys):
    assert keys_of(*request_words) == [k.encode() for k in keys]


def test_movable_keys_agree_with_command_getkeys():
    args = [b"ZUNIONSTORE", b"d", b"3", b"a", b"b", b"c"]
    spec = spec_for(args)
    assert request_keys(spec, args) == [args[i] for i, _ in command_keys(spec, args)]


@pytest.mark.parametrize(
    "request_words",
    [
        ["PING"],
        ["ECHO", "x"],
        ["INFO", "cluster"],
        ["DBSIZE"],
        ["KEYS", "*"],
        ["SCAN", "0", "MATCH", "a*"],
        ["FLUSHALL"],
        ["RANDOMKEY"],
        ["MULTI"],
        ["CLIENT", "LIST"],
        ["CONFIG", "GET", "save"],
        ["COMMAND", "GETKEYS", "GET", "k"],
        ["CLUSTER", "KEYSLOT", "k"],
        ["CLUSTER", "GETKEYSINSLOT", "1", "1"],
        ["READONLY"],
        ["ASKING"],
    ],
)
def test_keyless_commands_have_no_slot(request_words):
    assert slot_of(*request_words) == NO_KEYS


@pytest.mark.parametrize(
    "request_words",
    [
        ["MSET", A, "1", B, "2"],
        ["MGET", A, B],
        ["DEL", A, B],
        ["EXISTS", A, A, B],
        ["RENAME", A, B],
        ["SUNIONSTORE", A, A, B],
        ["ZUNIONSTORE", A, "1", B],  # the destination counts too
        ["ZINTERCARD", "2", A, B],
        ["LMPOP", "2", A, B, "LEFT"],
        ["BLMPOP", "0", "2", A, B, "LEFT"],
        ["WATCH", A, B],
    ],
)
def test_cross_slot_requests(request_words):
    assert slot_of(*request_words) == CROSS_SLOT


@pytest.mark.parametrize(
    "request_words",
    [
        ["MSET", "{u1}.a", "1", "{u1}.b", "2"],
        ["MGET", "{u1}.a", "{u1}.b", "{u1}"],
        ["DEL", "x{u1}", "y{u1}z"],
        ["ZUNIONSTORE", "{u1}dst", "2", "{u1}z1", "{u1}z2"],
        ["LMPOP", "2", "{u1}l1", "{u1}l2", "LEFT"],
        ["MGET", A, A, A],
    ],
)
def test_keys_sharing_a_slot(request_words):
    slot = slot_of(*request_words)
    assert slot == key_slot(keys_of(*request_words)[0])
    assert 0 <= slot < SLOT_COUNT


def test_malformed_movable_request_has_no_keys_and_runs_locally():
    # numkeys larger than what follows: the handler reports the syntax error.
    assert slot_of("ZUNIONSTORE", "d", "5", "a") == NO_KEYS
    assert slot_of("LMPOP", "x", "a", "LEFT") == NO_KEYS


def test_transaction_slot_covers_every_queued_command():
    def queued(*requests):
        return [(spec_for(args), args) for args in ([w.encode() for w in r] for r in requests)]

    assert requests_slot(queued(["PING"], ["INFO"])) == NO_KEYS
    assert requests_slot(queued(["SET", "{t}1", "v"], ["PING"], ["GET", "{t}2"])) == key_slot(b"t")
    assert requests_slot(queued(["SET", A, "v"], ["GET", B])) == CROSS_SLOT
    assert requests_slot(queued(["SET", A, "v"], ["MGET", A, B])) == CROSS_SLOT
    assert requests_slot([]) == NO_KEYS


# -- placement ----------------------------------------------------------------------

N1, N2, N3 = "1" * 40, "2" * 40, "3" * 40


MEMBERSHIP = Membership(
    [Member(node_id, "127.0.0.1", 7000 + i, 17000 + i) for i, node_id in enumerate((N1, N2, N3))]
)
LAYOUT = [(0, 5460, (N1, N2)), (5461, 10922, (N2, N3)), (10923, 16383, (N3, N1))]


def topology(myself=N1, states=None, layout=LAYOUT):
    return Topology(myself, MEMBERSHIP, TableRing(layout), 2, states)


def test_place_serves_own_slots_and_names_the_coordinator_of_others():
    t = topology()
    assert place(t, 0) is None
    assert place(t, 5460) is None
    assert place(t, 5461) == N2
    assert place(t, 16383) == N3
    assert t.moved(5461) == b"-MOVED 5461 127.0.0.1:7001\r\n"


def test_relaxed_placement_accepts_replica_slots_only():
    t = topology()
    assert place(t, 12000, relaxed=True) is None  # N1 is the replica there
    assert place(t, 6000, relaxed=True) == N2  # N1 holds nothing of it
    assert place(t, 12000, relaxed=False) == N3


def test_failed_coordinator_hands_slots_to_the_next_live_node():
    t = topology(states={N2: NodeState.FAIL})
    assert place(t, 6000) == N3
    assert cluster_ok(t)


def test_slots_without_live_nodes_and_a_down_cluster():
    t = topology(states={N2: NodeState.FAIL, N3: NodeState.FAIL})
    assert not cluster_ok(t)
    assert place(t, 6000) == SLOT_NOT_SERVED_ERROR  # N2 and N3 both failed
    assert place(t, 100) == CLUSTER_DOWN_ERROR  # served by N1, but the cluster is down
    assert place(t, 12000, relaxed=True) == CLUSTER_DOWN_ERROR


def test_suspected_nodes_keep_their_slots():
    t = topology(states={N2: NodeState.PFAIL})
    assert place(t, 6000) == N2
    assert cluster_ok(t)


def test_unassigned_slots_are_not_served():
    t = topology(layout=[(0, 99, (N1,))])
    assert place(t, 100) == SLOT_NOT_SERVED_ERROR
    assert place(t, 5) == CLUSTER_DOWN_ERROR


def test_error_texts():
    assert CROSSSLOT_ERROR == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    assert CLUSTER_DOWN_ERROR == b"-CLUSTERDOWN The cluster is down\r\n"
    assert SLOT_NOT_SERVED_ERROR == b"-CLUSTERDOWN Hash slot not served\r\n"


# -- the fast path's tables ---------------------------------------------------------

@pytest.mark.parametrize("name", ["get", "set", "incr", "hset", "lpush", "zadd", "strlen", "expire", "type"])
def test_one_key_commands_stay_on_the_fast_path(name):
    spec = TABLE.specs[name]
    fast = fast_spec(spec)
    assert fast is not None and fast.first_key == 1 and fast.handler is spec.handler


@pytest.mark.parametrize("name", ["ping", "echo", "dbsize", "info", "keys", "scan", "flushall", "multi"])
def test_keyless_commands_stay_on_the_fast_path(name):
    spec = TABLE.specs[name]
    assert fast_spec(spec) is spec


@pytest.mark.parametrize("name", ["mget", "mset", "del", "exists", "rename", "zunionstore", "lmpop", "zunion", "watch"])
def test_multi_key_and_movable_key_commands_take_the_general_path(name):
    assert fast_spec(TABLE.specs[name]) is None


def three_member_state(myself_index=0, rf=1):
    members = [Member(node_id, "127.0.0.1", 7000 + i, 17000 + i) for i, node_id in enumerate((N1, N2, N3))]
    state = ClusterState(members[myself_index], rf=rf)
    state.merge(Membership(members))
    return state


def test_served_slots_follow_the_cluster_state():
    state = three_member_state()
    served = served_slots(state)
    assert served is state.served
    assert 0 < sum(served) < SLOT_COUNT
    state.set_states({N2: NodeState.FAIL})  # rf 1: N2's slots have no live node
    assert not any(served_slots(state))  # the cluster is down: every keyed request is checked


# -- proxy reply framing ------------------------------------------------------------

REPLIES = [
    b"+OK\r\n",
    b"-ERR wrong\r\n",
    b":42\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"$5\r\nhe\r\nl\r\n",  # a bulk string holding CRLF
    b"*-1\r\n",
    b"*0\r\n",
    b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n+x\r\n$-1\r\n",
    b"_\r\n",
    b"#t\r\n",
    b",3.5\r\n",
    b"(12345678901234567890\r\n",
    b"!8\r\nERR x\r\ny\r\n",
    b"=8\r\ntxt:abcd\r\n",
    b"%2\r\n$1\r\nk\r\n:1\r\n+k2\r\n*1\r\n_\r\n",
    b"~2\r\n:1\r\n:2\r\n",
    b"|1\r\n+key\r\n+val\r\n$3\r\nabc\r\n",  # an attribute, then the reply it annotates
    b">2\r\n+message\r\n+x\r\n",
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 10_000])
def test_reply_framer_splits_replies_at_any_chunk_size(chunk):
    stream = b"".join(REPLIES)
    framer = ReplyFramer()
    found = []
    for start in range(0, len(stream), chunk):
        framer.feed(stream[start : start + chunk])
        while (reply := framer.next_reply()) is not None:
            found.append(reply)
    assert found == REPLIES
    assert framer.idle


def test_reply_framer_waits_for_the_whole_reply():
    framer = ReplyFramer()
    framer.feed(b"*2\r\n$3\r\nabc\r\n$4\r\nab")
    assert framer.next_reply() is None
    assert not framer.idle
    framer.feed(b"cd\r\n+next")
    assert framer.next_reply() == b"*2\r\n$3\r\nabc\r\n$4\r\nabcd\r\n"
    assert framer.next_reply() is None
    framer.feed(b"\r\n")
    assert framer.next_reply() == b"+next\r\n"


@pytest.mark.parametrize("garbage", [b"?what\r\n", b"$x\r\n", b"*1x\r\n"])
def test_reply_framer_rejects_what_is_not_resp(garbage):
    framer = ReplyFramer()
    framer.feed(garbage)
    with pytest.raises(ProxyError):
        framer.next_reply()


def test_encode_request():
    assert encode_request([b"SET", b"k", b""]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that decides its slot, as the Redis Cluster
    specification words it: the text between the first ``{`` and the next
    ``}`` when that text is not empty, else the whole key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"{", b"}", b"a", b"b"]), max_size=12).map(b"".join))
def test_key_slot_is_the_crc_of_the_hash_tag(key):
    """``key_slot`` hashes what ``hash_tag`` extracts, for keys of every brace shape."""
    assert key_slot(key) == crc_hqx(hash_tag(key), 0) % SLOT_COUNT
