"""Tests for the topology renderers.

The first part lays slots out by hand (a table of preference lists standing in for
the ring) to reproduce Redis Cluster 7.0.15 clusters this project observed, and
compares the rendered replies with the replies those real clusters gave, byte for
byte where respkv's model and Redis's coincide:

* a healthy cluster of three masters with one replica each (``--cluster-replicas
  1``): respkv's equivalent is RF 2 with each master's replica second in the list;
* a sparse cluster of three masters, built with ``CLUSTER ADDSLOTS``, where one
  master holds no slot and single-slot ranges appear;
* the healthy cluster after killing a replica and then its master.

The second part checks properties of renderings over real rings.
"""

from __future__ import annotations

import random
import re
import time

import hiredis
import pytest

from respkv.cluster.failure import NodeState
from respkv.cluster.membership import Member, Membership
from respkv.cluster.ring import Ring
from respkv.cluster.topology import (
    MESSAGE_TYPES,
    Topology,
    ask,
    encode,
    moved,
    slot_range_text,
)
from respkv.keyspace.slots import SLOT_COUNT
from respkv.protocol.reply import RESP2, RESP3

OK, PFAIL, FAIL = NodeState.OK, NodeState.PFAIL, NodeState.FAIL


class TableRing:
    """A stand-in for :class:`Ring` with preference lists laid out by hand.

    ``layout`` is ``[(start, end, nodes), ...]``; slots it does not cover have an
    empty preference list (unassigned).
    """

    def __init__(self, layout):
        table = [()] * SLOT_COUNT
        for start, end, nodes in layout:
            table[start : end + 1] = [tuple(nodes)] * (end - start + 1)
        self.table = tuple(table)
        self.members = {node_id: 1 for _, _, nodes in layout for node_id in nodes}

    def preference_lists(self, rf):
        return self.table


def parse(data: bytes):
    """One RESP reply parsed by hiredis (verbatim strings lose their ``txt:``)."""
    reader = hiredis.Reader()
    reader.feed(data)
    value = reader.gets()
    assert value is not False and reader.gets() is False
    return value


def zero_offsets(data: bytes) -> bytes:
    """A ``CLUSTER SHARDS`` reply with every replication offset set to 0."""
    return re.sub(rb"(replication-offset\r\n):\d+\r\n", rb"\1:0\r\n", data)


# -- what real Redis Cluster 7.0.15 said -------------------------------------------

# The healthy cluster: masters on 30101..30103 (config epochs 1..3), replicas on
# 30104..30106 replicating them in order.
M1 = "b9692fc3163ea5d04136ba2eff443a9f51f5275b"
M2 = "90f5c0344e5432889105f1134182d9bc82975433"
M3 = "36a5c59246f0781b719462ab27c1efd548e2dab6"
R1 = "f31a90810b143d6312402fa55b8d3c4e84497ff5"
R2 = "1e60db74732f3d0d318e39129befa191e8634e27"
R3 = "a72902045c11cab0abfdd7025aca32489a19baf8"

REDIS_SLOTS_RESP2 = (
    b"*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:30101\r\n$40\r\n"
    b"b9692fc3163ea5d04136ba2eff443a9f51f5275b\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n"
    b":30104\r\n$40\r\nf31a90810b143d6312402fa55b8d3c4e84497ff5\r\n*0\r\n*4\r\n:5461\r\n"
    b":10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:30102\r\n$40\r\n"
    b"90f5c0344e5432889105f1134182d9bc82975433\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n"
    b":30105\r\n$40\r\n1e60db74732f3d0d318e39129befa191e8634e27\r\n*0\r\n*4\r\n:10923\r\n"
    b":16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:30103\r\n$40\r\n"
    b"36a5c59246f0781b719462ab27c1efd548e2dab6\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n"
    b":30106\r\n$40\r\na72902045c11cab0abfdd7025aca32489a19baf8\r\n*0\r\n"
)

REDIS_SHARDS_RESP2 = (
    b"*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\n"
    b"id\r\n$40\r\nb9692fc3163ea5d04136ba2eff443a9f51f5275b\r\n$4\r\nport\r\n:30101\r\n"
    b"$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n"
    b"$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    b"*14\r\n$2\r\nid\r\n$40\r\nf31a90810b143d6312402fa55b8d3c4e84497ff5\r\n$4\r\nport\r\n"
    b":30104\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n"
    b"role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\n"
    b"online\r\n*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n*14\r\n"
    b"$2\r\nid\r\n$40\r\n90f5c0344e5432889105f1134182d9bc82975433\r\n$4\r\nport\r\n"
    b":30102\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n"
    b"role\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\n"
    b"online\r\n*14\r\n$2\r\nid\r\n$40\r\n1e60db74732f3d0d318e39129befa191e8634e27\r\n"
    b"$4\r\nport\r\n:30105\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n"
    b"127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:14\r\n"
    b"$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n"
    b"$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    b"36a5c59246f0781b719462ab27c1efd548e2dab6\r\n$4\r\nport\r\n:30103\r\n$2\r\nip\r\n"
    b"$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n"
    b"master\r\n$18\r\nreplication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    b"*14\r\n$2\r\nid\r\n$40\r\na72902045c11cab0abfdd7025aca32489a19baf8\r\n$4\r\nport\r\n"
    b":30106\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n"
    b"role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:14\r\n$6\r\nhealth\r\n$6\r\n"
    b"online\r\n"
)

REDIS_SHARDS_RESP3 = (
    b"*3\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n%7\r\n$2\r\n"
    b"id\r\n$40\r\nb9692fc3163ea5d04136ba2eff443a9f51f5275b\r\n$4\r\nport\r\n:30101\r\n"
    b"$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n"
    b"$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
    b"%7\r\n$2\r\nid\r\n$40\r\nf31a90810b143d6312402fa55b8d3c4e84497ff5\r\n$4\r\nport\r\n"
    b":30104\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n"
    b"role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\n"
    b"online\r\n%2\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n%7\r\n"
    b"$2\r\nid\r\n$40\r\n90f5c0344e5432889105f1134182d9bc82975433\r\n$4\r\nport\r\n"
    b":30102\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n"
    b"role\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\n"
    b"online\r\n%7\r\n$2\r\nid\r\n$40\r\n1e60db74732f3d0d318e39129befa191e8634e27\r\n"
    b"$4\r\nport\r\n:30105\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n"
    b"127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:28\r\n"
    b"$6\r\nhealth\r\n$6\r\nonline\r\n%2\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n"
    b"$5\r\nnodes\r\n*2\r\n%7\r\n$2\r\nid\r\n$40\r\n"
    b"36a5c59246f0781b719462ab27c1efd548e2dab6\r\n$4\r\nport\r\n:30103\r\n$2\r\nip\r\n"
    b"$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n"
    b"master\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\nonline\r\n%7\r\n"
    b"$2\r\nid\r\n$40\r\na72902045c11cab0abfdd7025aca32489a19baf8\r\n$4\r\nport\r\n"
    b":30106\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n"
    b"role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\n"
    b"online\r\n"
)

REDIS_SPARSE_SLOTS_RESP2 = (
    b"*8\r\n*3\r\n:0\r\n:2\r\n*4\r\n$9\r\n127.0.0.1\r\n:30101\r\n$40\r\n"
    b"4e2c6d46eeaed54d7513f8aa5a7a6316d6fe339c\r\n*0\r\n*3\r\n:3\r\n:4\r\n*4\r\n$9\r\n"
    b"127.0.0.1\r\n:30102\r\n$40\r\n9aaa1500b78e40c2b22263d823d8906ea16eac90\r\n*0\r\n"
    b"*3\r\n:5\r\n:5\r\n*4\r\n$9\r\n127.0.0.1\r\n:30101\r\n$40\r\n"
    b"4e2c6d46eeaed54d7513f8aa5a7a6316d6fe339c\r\n*0\r\n*3\r\n:6\r\n:6\r\n*4\r\n$9\r\n"
    b"127.0.0.1\r\n:30102\r\n$40\r\n9aaa1500b78e40c2b22263d823d8906ea16eac90\r\n*0\r\n"
    b"*3\r\n:7\r\n:7\r\n*4\r\n$9\r\n127.0.0.1\r\n:30101\r\n$40\r\n"
    b"4e2c6d46eeaed54d7513f8aa5a7a6316d6fe339c\r\n*0\r\n*3\r\n:8\r\n:99\r\n*4\r\n$9\r\n"
    b"127.0.0.1\r\n:30102\r\n$40\r\n9aaa1500b78e40c2b22263d823d8906ea16eac90\r\n*0\r\n"
    b"*3\r\n:100\r\n:100\r\n*4\r\n$9\r\n127.0.0.1\r\n:30101\r\n$40\r\n"
    b"4e2c6d46eeaed54d7513f8aa5a7a6316d6fe339c\r\n*0\r\n*3\r\n:200\r\n:300\r\n*4\r\n$9\r\n"
    b"127.0.0.1\r\n:30101\r\n$40\r\n4e2c6d46eeaed54d7513f8aa5a7a6316d6fe339c\r\n*0\r\n"
)

REDIS_SPARSE_SHARDS_RESP2 = (
    b"*3\r\n*4\r\n$5\r\nslots\r\n*6\r\n:3\r\n:4\r\n:6\r\n:6\r\n:8\r\n:99\r\n$5\r\n"
    b"nodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    b"9aaa1500b78e40c2b22263d823d8906ea16eac90\r\n$4\r\nport\r\n:30102\r\n$2\r\nip\r\n"
    b"$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n"
    b"master\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n"
    b"$5\r\nslots\r\n*10\r\n:0\r\n:2\r\n:5\r\n:5\r\n:7\r\n:7\r\n:100\r\n:100\r\n:200\r\n"
    b":300\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    b"4e2c6d46eeaed54d7513f8aa5a7a6316d6fe339c\r\n$4\r\nport\r\n:30101\r\n$2\r\nip\r\n"
    b"$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n"
    b"master\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n"
    b"$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n"
    b"1f422278a0d30ef05a06b1584b28d0c3ddb619cc\r\n$4\r\nport\r\n:30103\r\n$2\r\nip\r\n"
    b"$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n"
    b"master\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
)



def healthy_membership() -> Membership:
    return Membership(
        [
            Member(node_id, "127.0.0.1", port, port + 10000, 1, epoch)
            for node_id, port, epoch in [
                (M1, 30101, 1), (M2, 30102, 2), (M3, 30103, 3),
                (R1, 30104, 1), (R2, 30105, 2), (R3, 30106, 3),
            ]
        ]
    )  # fmt: skip


HEALTHY_LAYOUT = [(0, 5460, (M1, R1)), (5461, 10922, (M2, R2)), (10923, 16383, (M3, R3))]


def healthy(states=None, myself=M1) -> Topology:
    return Topology(
        myself, healthy_membership(), TableRing(HEALTHY_LAYOUT), 2, states, current_epoch=6
    )


# CLUSTER NODES from 30101: its master lines, with their ping-sent/pong-recv values.
REDIS_MASTER_LINES = [
    f"{M1} 127.0.0.1:30101@40101 myself,master - 0 1795389992000 1 connected 0-5460\n",
    f"{M2} 127.0.0.1:30102@40102 master - 0 1795389992842 2 connected 5461-10922\n",
    f"{M3} 127.0.0.1:30103@40103 master - 0 1795389992540 3 connected 10923-16383\n",
]
PONGS = {M1: 1795389992000, M2: 1795389992842, M3: 1795389992540}

REDIS_INFO = (
    "cluster_state:ok\r\n"
    "cluster_slots_assigned:16384\r\n"
    "cluster_slots_ok:16384\r\n"
    "cluster_slots_pfail:0\r\n"
    "cluster_slots_fail:0\r\n"
    "cluster_known_nodes:6\r\n"
    "cluster_size:3\r\n"
    "cluster_current_epoch:6\r\n"
    "cluster_my_epoch:1\r\n"
    "cluster_stats_messages_ping_sent:29\r\n"
    "cluster_stats_messages_pong_sent:28\r\n"
    "cluster_stats_messages_sent:57\r\n"
    "cluster_stats_messages_ping_received:23\r\n"
    "cluster_stats_messages_pong_received:29\r\n"
    "cluster_stats_messages_meet_received:5\r\n"
    "cluster_stats_messages_received:57\r\n"
    "total_cluster_links_buffer_limit_exceeded:0\r\n"
)


def test_cluster_slots_matches_redis_byte_for_byte():
    topology = healthy()
    assert topology.encode_cluster_slots(RESP2) == REDIS_SLOTS_RESP2
    # RESP3 differs only in the empty metadata map, as Redis's reply did.
    assert topology.encode_cluster_slots(RESP3) == REDIS_SLOTS_RESP2.replace(b"*0\r\n", b"%0\r\n")


def test_cluster_slots_as_python_values():
    assert healthy().cluster_slots() == [
        [0, 5460, ["127.0.0.1", 30101, M1, {}], ["127.0.0.1", 30104, R1, {}]],
        [5461, 10922, ["127.0.0.1", 30102, M2, {}], ["127.0.0.1", 30105, R2, {}]],
        [10923, 16383, ["127.0.0.1", 30103, M3, {}], ["127.0.0.1", 30106, R3, {}]],
    ]


@pytest.mark.parametrize(
    "proto, recorded", [(RESP2, REDIS_SHARDS_RESP2), (RESP3, REDIS_SHARDS_RESP3)]
)
def test_cluster_shards_matches_redis_up_to_replication_offsets(proto, recorded):
    assert healthy().encode_cluster_shards(proto) == zero_offsets(recorded)


def test_cluster_shards_as_python_values():
    shards = healthy().cluster_shards()
    assert [shard["slots"] for shard in shards] == [[0, 5460], [5461, 10922], [10923, 16383]]
    assert shards[0]["nodes"][1] == {
        "id": R1,
        "port": 30104,
        "ip": "127.0.0.1",
        "endpoint": "127.0.0.1",
        "role": "replica",
        "replication-offset": 0,
        "health": "online",
    }
    assert list(shards[0]) == ["slots", "nodes"]


def test_cluster_nodes_master_lines_match_redis():
    text = healthy().cluster_nodes(pong_received=PONGS)
    lines = text.splitlines(keepends=True)
    for line in REDIS_MASTER_LINES:
        assert line in lines
    # Replicas are shown as masters of nothing, which every tool skips.
    assert f"{R1} 127.0.0.1:30104@40104 master - 0 0 1 connected\n" in lines
    assert len(lines) == 6 and text.endswith("\n") and "\r" not in text


def test_cluster_info_matches_redis():
    info = healthy().cluster_info(
        messages_sent={"ping": 29, "pong": 28},
        messages_received={"ping": 23, "pong": 29, "meet": 5},
    )
    assert info == REDIS_INFO


@pytest.mark.parametrize(
    "render",
    [
        lambda t, proto: t.encode_cluster_nodes(proto),
        lambda t, proto: t.encode_cluster_info(proto),
    ],
    ids=["nodes", "info"],
)
def test_text_replies_are_bulk_in_resp2_and_verbatim_in_resp3(render):
    topology = healthy()
    text = render(topology, RESP2)
    assert text.startswith(b"$")
    body = parse(text)
    assert render(topology, RESP3) == b"=%d\r\ntxt:%b\r\n" % (len(body) + 4, body)


def test_moved_and_ask_texts():
    # Redis's reply to GET foo sent to 30101.
    assert moved(12182, "127.0.0.1", 30103) == b"-MOVED 12182 127.0.0.1:30103\r\n"
    assert ask(12182, "127.0.0.1", 30103) == b"-ASK 12182 127.0.0.1:30103\r\n"
    assert moved(0, "::1", 7000) == b"-MOVED 0 ::1:7000\r\n"
    assert healthy().moved(12182) == b"-MOVED 12182 127.0.0.1:30103\r\n"


# The sparse cluster: ADDSLOTS gave 30101 slots 0-2 5 7 100 200-300 and 30102
# 3-4 6 8-99; 30103 holds nothing.  Config epochs 1, 0 and 2.
N1 = "4e2c6d46eeaed54d7513f8aa5a7a6316d6fe339c"
N2 = "9aaa1500b78e40c2b22263d823d8906ea16eac90"
N3 = "1f422278a0d30ef05a06b1584b28d0c3ddb619cc"
SPARSE_LAYOUT = [
    (0, 2, (N1,)), (3, 4, (N2,)), (5, 5, (N1,)), (6, 6, (N2,)), (7, 7, (N1,)),
    (8, 99, (N2,)), (100, 100, (N1,)), (200, 300, (N1,)),
]  # fmt: skip
REDIS_SPARSE_NODES = {
    f"{N1} 127.0.0.1:30101@40101 myself,master - 0 1795390158000 1 connected "
    "0-2 5 7 100 200-300\n",
    f"{N2} 127.0.0.1:30102@40102 master - 0 1795390158801 0 connected 3-4 6 8-99\n",
    f"{N3} 127.0.0.1:30103@40103 master - 0 1795390158800 2 connected\n",
}
REDIS_SPARSE_INFO_HEAD = [
    "cluster_state:fail",
    "cluster_slots_assigned:202",
    "cluster_slots_ok:202",
    "cluster_slots_pfail:0",
    "cluster_slots_fail:0",
    "cluster_known_nodes:3",
    "cluster_size:2",
    "cluster_current_epoch:2",
    "cluster_my_epoch:1",
]


def sparse() -> Topology:
    membership = Membership(
        [
            Member(N1, "127.0.0.1", 30101, 40101, 1, 1),
            Member(N2, "127.0.0.1", 30102, 40102, 1, 0),
            Member(N3, "127.0.0.1", 30103, 40103, 1, 2),
        ]
    )
    return Topology(N1, membership, TableRing(SPARSE_LAYOUT), 1, current_epoch=2)


def test_sparse_cluster_slots_match_redis():
    assert sparse().encode_cluster_slots(RESP2) == REDIS_SPARSE_SLOTS_RESP2


def test_sparse_cluster_nodes_match_redis():
    pongs = {N1: 1795390158000, N2: 1795390158801, N3: 1795390158800}
    lines = sparse().cluster_nodes(pong_received=pongs).splitlines(keepends=True)
    assert set(lines) == REDIS_SPARSE_NODES


def test_sparse_cluster_shards_match_redis_up_to_order():
    # Redis lists shards in its hash table's order; respkv by first slot, with
    # slotless masters last.
    ours = parse(sparse().encode_cluster_shards(RESP2))
    theirs = parse(REDIS_SPARSE_SHARDS_RESP2)
    assert ours == [theirs[1], theirs[0], theirs[2]]


def test_sparse_cluster_info_matches_redis():
    assert sparse().cluster_info().split("\r\n")[:9] == REDIS_SPARSE_INFO_HEAD


# The healthy cluster seen from 30101 while 30103 was silent (fail?), and after
# 30106 and then 30103 were failed.
REDIS_PFAIL_LINE = (
    f"{M3} 127.0.0.1:30103@40103 master,fail? - 1795390034776 1795390033772 3 "
    "disconnected 10923-16383\n"
)


def test_pfail_master_line_matches_redis_and_keeps_its_slots():
    topology = healthy({M3: PFAIL})
    text = topology.cluster_nodes({M3: 1795390034776}, {M3: 1795390033772})
    assert REDIS_PFAIL_LINE in text.splitlines(keepends=True)
    assert topology.coordinator(12182) == M3
    info = topology.cluster_info().split("\r\n")
    assert info[:5] == [
        "cluster_state:ok",
        "cluster_slots_assigned:16384",
        "cluster_slots_ok:10923",
        "cluster_slots_pfail:5461",
        "cluster_slots_fail:0",
    ]


def test_failed_replica_leaves_cluster_slots_like_redis():
    topology = healthy({R3: FAIL})
    slots = topology.encode_cluster_slots(RESP2)
    assert R3.encode() not in slots
    assert parse(slots)[2] == [10923, 16383, [b"127.0.0.1", 30103, M3.encode(), []]]
    line = next(line for line in topology.cluster_nodes().splitlines() if line.startswith(R3))
    assert line.split(" ")[2] == "master,fail" and line.split(" ")[7] == "disconnected"
    # Like Redis's shards, the failed node is still listed, with health "fail".
    described = [node for shard in topology.cluster_shards() for node in shard["nodes"]]
    assert {node["id"]: node["health"] for node in described}[R3] == "fail"


def test_failed_master_and_replica_match_redis_cluster_info():
    topology = healthy({M3: FAIL, R3: FAIL})
    assert topology.cluster_info().split("\r\n")[:9] == [
        "cluster_state:fail",
        "cluster_slots_assigned:16384",
        "cluster_slots_ok:10923",
        "cluster_slots_pfail:0",
        "cluster_slots_fail:5461",
        "cluster_known_nodes:6",
        "cluster_size:3",
        "cluster_current_epoch:6",
        "cluster_my_epoch:1",
    ]
    # Redis kept listing the dead master in CLUSTER SLOTS; respkv leaves the
    # range out, since no live node can take a redirect for it.
    assert [entry[:2] for entry in topology.cluster_slots()] == [[0, 5460], [5461, 10922]]
    assert topology.moved(12182) is None and topology.coordinator(12182) is None
    line = next(line for line in topology.cluster_nodes().splitlines() if line.startswith(M3))
    assert line == f"{M3} 127.0.0.1:30103@40103 master,fail - 0 0 3 disconnected"


def test_failed_master_hands_its_slots_to_the_next_live_node():
    topology = healthy({M3: FAIL})
    assert topology.coordinator(12182) == R3
    assert topology.moved(12182) == b"-MOVED 12182 127.0.0.1:30106\r\n"
    assert topology.coordinated_ranges(R3) == [(10923, 16383)]
    assert topology.coordinated_ranges(M3) == []
    assert topology.cluster_info().startswith("cluster_state:ok\r\n")


def test_myself_is_never_shown_failed():
    topology = healthy({M1: FAIL})
    assert topology.state(M1) is OK
    assert topology.cluster_nodes().count("myself,master - ") == 1


# -- the renderers in general ------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, text", [(0, 0, "0"), (5, 5, "5"), (0, 5460, "0-5460"), (16383, 16383, "16383")]
)
def test_slot_range_text(start, end, text):
    assert slot_range_text(start, end) == text


def test_cluster_info_message_counters():
    info = healthy().cluster_info(
        messages_sent={"zeta": 2, "fail": 1, "ping": 0, "publishshard": 4, "alpha": 3},
        messages_received={},
        links_buffer_limit_exceeded=7,
    )
    tail = info.split("\r\n")[9:]
    assert tail == [
        "cluster_stats_messages_fail_sent:1",
        "cluster_stats_messages_publishshard_sent:4",
        "cluster_stats_messages_alpha_sent:3",
        "cluster_stats_messages_zeta_sent:2",
        "cluster_stats_messages_sent:10",
        "cluster_stats_messages_received:0",
        "total_cluster_links_buffer_limit_exceeded:7",
        "",
    ]
    assert MESSAGE_TYPES[:3] == ("ping", "pong", "meet")


def test_encode_structures():
    assert encode([1, "a", {"k": []}], RESP2) == b"*3\r\n:1\r\n$1\r\na\r\n*2\r\n$1\r\nk\r\n*0\r\n"
    assert encode({"k": 1}, RESP3) == b"%1\r\n$1\r\nk\r\n:1\r\n"
    for bad in (True, 1.5, None):
        with pytest.raises(TypeError):
            encode(bad, RESP2)


def test_snapshot_validation():
    membership = healthy_membership()
    ring = TableRing(HEALTHY_LAYOUT)
    with pytest.raises(ValueError):
        Topology("f" * 40, membership, ring, 2)
    with pytest.raises(ValueError):
        Topology(M1, membership.without_member(R3), ring, 2)
    with pytest.raises(ValueError):
        Topology(M1, membership, ring, 0)


def test_empty_ring_assigns_nothing():
    membership = Membership([Member(M1, "10.0.0.1", 7000, 17000)])
    topology = Topology(M1, membership, Ring({}, vnodes=4), 3)
    assert topology.cluster_slots() == []
    assert topology.cluster_info().split("\r\n")[:7] == [
        "cluster_state:fail",
        "cluster_slots_assigned:0",
        "cluster_slots_ok:0",
        "cluster_slots_pfail:0",
        "cluster_slots_fail:0",
        "cluster_known_nodes:1",
        "cluster_size:0",
    ]
    assert topology.cluster_shards() == [
        {"slots": [], "nodes": [topology.cluster_shards()[0]["nodes"][0]]}
    ]


# -- over real rings ---------------------------------------------------------------


def ring_cluster(seed: int, size: int) -> Membership:
    """``size`` members with random ids; member i at 10.0.0.<i+1>:700<i>, epoch i+1."""
    rng = random.Random(seed)
    ids = ["%040x" % rng.getrandbits(160) for _ in range(size)]
    return Membership(
        [
            Member(node_id, f"10.0.0.{i + 1}", 7000 + i, 17000 + i, 1, 1 + i)
            for i, node_id in enumerate(ids)
        ]
    )


def redis_cli_signature(text: str) -> str:
    """The configuration signature ``redis-cli --cluster check`` compares across nodes.

    Per line with slots: the node id and its slot tokens sorted as strings; lines
    sorted and joined.  Only lines ending in ``\\n`` are read, as redis-cli does.
    """
    configs = []
    for line in text.split("\n")[:-1]:
        fields = line.split(" ")
        if len(fields) > 8:
            configs.append(fields[0] + ":" + "|".join(sorted(fields[8:])))
    return "|".join(sorted(configs))


def benchmark_masters(text: str) -> dict[tuple[str, int], set[int]]:
    """The masters and slots ``redis-benchmark --cluster`` reads from ``CLUSTER NODES``."""
    masters = {}
    for line in text.split("\n")[:-1]:
        name, addr, flags, master_id, *rest = line.split(" ")
        assert len(rest) >= 4
        if "slave" in flags or master_id != "-":
            continue
        ip, _, port = addr.partition("@")[0].rpartition(":")
        slots = set()
        for token in rest[4:]:
            start, _, end = token.partition("-")
            slots.update(range(int(start), int(end or start) + 1))
        if slots:
            masters[ip, int(port)] = slots
    return masters


@pytest.mark.parametrize("rf", [1, 2, 3])
def test_live_lists_follow_the_ring(rf):
    membership = ring_cluster(1, 6)
    ring = membership.ring(vnodes=32)
    ids = membership.active_ids()
    states = {ids[1]: FAIL, ids[2]: PFAIL, ids[4]: FAIL}
    live = {node_id for node_id in ids if states.get(node_id) is not FAIL}
    topology = Topology(ids[0], membership, ring, rf, states)
    covered = []
    for start, end, nodes in topology.slot_ranges():
        for slot in (start, end):
            expected = tuple(n for n in ring.preference_list(slot, rf) if n in live)
            assert nodes == expected == topology.nodes_for(slot)
            assert topology.coordinator(slot) == ring.coordinator(slot, rf, live)
        covered.extend(range(start, end + 1))
    unserved = [
        slot for slot in range(SLOT_COUNT) if not set(ring.preference_list(slot, rf)) & live
    ]
    assert sorted(covered + unserved) == list(range(SLOT_COUNT))
    info = dict(line.split(":") for line in topology.cluster_info().split("\r\n")[:-1])
    assert int(info["cluster_slots_fail"]) == len(unserved)
    pfail = sum(1 for slot in range(SLOT_COUNT) if topology.coordinator(slot) == ids[2])
    assert int(info["cluster_slots_pfail"]) == pfail
    assert info["cluster_state"] == ("ok" if not unserved else "fail")


def test_every_node_publishes_the_same_slot_configuration():
    membership = ring_cluster(2, 5)
    ring = membership.ring(vnodes=32)
    ids = membership.active_ids()
    states = {ids[3]: FAIL}
    texts = [
        Topology(node_id, membership, ring, 3, states).cluster_nodes()
        for node_id in ids
        if node_id != ids[3]
    ]
    assert len({redis_cli_signature(text) for text in texts}) == 1
    masters = benchmark_masters(texts[0])
    failed = membership[ids[3]]
    assert (failed.host, failed.port) not in masters  # the failed node serves nothing
    assert len(masters) == 4
    slots = [slot for served in masters.values() for slot in served]
    assert sorted(slots) == list(range(SLOT_COUNT))


def test_cluster_nodes_line_shapes():
    membership = ring_cluster(3, 4)
    ids = membership.active_ids()
    states = {ids[1]: PFAIL, ids[2]: FAIL}
    topology = Topology(ids[0], membership, membership.ring(vnodes=16), 2, states)
    lines = topology.cluster_nodes({ids[1]: 5}, {ids[1]: 4}).split("\n")
    assert lines[-1] == ""
    fields = [line.split(" ") for line in lines[:-1]]
    assert [f[0] for f in fields] == list(ids)
    assert [f[2] for f in fields] == ["myself,master", "master,fail?", "master,fail", "master"]
    assert [f[7] for f in fields] == ["connected", "disconnected", "disconnected", "connected"]
    assert [f[3] for f in fields] == ["-"] * 4
    assert fields[1][4:6] == ["5", "4"]
    assert [f[6] for f in fields] == [str(membership[i].epoch) for i in ids]
    assert len(fields[2]) == 8  # failed: no slots, no trailing space
    for f in fields:
        member = membership[f[0]]
        assert f[1] == f"{member.host}:{member.port}@{member.bus_port}"


def test_cluster_shards_group_ranges_by_live_preference_list():
    membership = ring_cluster(4, 5)
    ids = membership.active_ids()
    topology = Topology(ids[0], membership, membership.ring(vnodes=16), 3, {ids[2]: FAIL})
    shards = topology.cluster_shards()
    seen_slots = []
    lists = set()
    for shard in shards:
        nodes = tuple(node["id"] for node in shard["nodes"])
        assert nodes not in lists
        lists.add(nodes)
        roles = [node["role"] for node in shard["nodes"]]
        assert roles == ["master"] + ["replica"] * (len(nodes) - 1)
        pairs = list(zip(shard["slots"][::2], shard["slots"][1::2]))
        for start, end in pairs:
            assert topology.nodes_for(start) == nodes == topology.nodes_for(end)
            seen_slots.extend(range(start, end + 1))
    assert sorted(seen_slots) == list(range(SLOT_COUNT))
    # The failed node is listed once, alone, in an empty shard.
    assert shards[-1]["slots"] == [] and shards[-1]["nodes"][0]["id"] == ids[2]
    assert shards[-1]["nodes"][0]["health"] == "fail"
    firsts = [shard["slots"][0] for shard in shards if shard["slots"]]
    assert firsts == sorted(firsts)


def test_encodings_are_cached_and_agree_with_the_structures():
    membership = ring_cluster(5, 4)
    ids = membership.active_ids()
    topology = Topology(ids[0], membership, membership.ring(vnodes=16), 2)
    for proto in (RESP2, RESP3):
        slots = topology.encode_cluster_slots(proto)
        assert topology.encode_cluster_slots(proto) is slots
        assert slots == encode(topology.cluster_slots(), proto)
        shards = topology.encode_cluster_shards(proto)
        assert topology.encode_cluster_shards(proto) is shards
        assert shards == encode(topology.cluster_shards(), proto)


def test_large_cluster_slots_renders_quickly_and_is_cached():
    # Ten nodes at the default 1024 tokens each: thousands of ranges.
    membership = ring_cluster(6, 10)
    ring = membership.ring()
    ring.preference_lists(3)
    ids = membership.active_ids()
    topology = Topology(ids[0], membership, ring, 3, {ids[5]: FAIL})
    assert len(topology.slot_ranges()) > 5000
    started = time.perf_counter()
    topology.prepare()
    elapsed = time.perf_counter() - started
    assert elapsed < 0.25, f"rendering CLUSTER SLOTS twice took {elapsed * 1000:.0f} ms"
    started = time.perf_counter()
    for _ in range(100):
        topology.encode_cluster_slots(RESP2)
        topology.encode_cluster_slots(RESP3)
    assert time.perf_counter() - started < 0.05


def test_fallbacks_stand_in_for_failed_preferred_nodes_and_are_cached():
    membership = healthy_membership()
    ring = membership.ring(16)
    slot = 100
    preferred = ring.preference_list(slot, 3)
    failed = {preferred[1]: FAIL, preferred[2]: PFAIL}  # only FAIL counts as down
    topology = Topology(preferred[0], membership, ring, 3, failed)
    beyond = [node for node in ring.walk(slot) if node not in preferred]
    assert topology.fallbacks(slot) == {preferred[1]: beyond[0]}
    assert topology.fallbacks(slot) is topology.fallbacks(slot)
    assert Topology(preferred[0], membership, ring, 3).fallbacks(slot) == {}
