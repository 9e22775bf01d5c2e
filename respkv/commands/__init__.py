"""The command layer: the command table, the key-spec interpreter, and the command families.

A family is a module of handlers; importing it registers them (see ``table``).  The
families here are the ones this layer can hold.  The cluster and replication
commands (``CLUSTER ...``, ``SIBLINGS`` and friends) need the layers above this one,
so they live there (:mod:`respkv.cluster.commands`, :mod:`respkv.replication.commands`)
and the node builds its table from all of them (:func:`respkv.node.build_command_table`).
"""

#: Modules of this layer holding handlers, one per command family, in the order
#: their commands are listed.
FAMILIES = tuple(
    f"respkv.commands.{name}"
    for name in (
        "transactions", "connection", "client", "tracking", "server", "memory", "persistence", "strings", "counters", "lcs", "keys",
        "hashes", "sets", "zsets", "zset_ranges", "zset_setops", "lists", "blocking_lists",
        "blocking_zsets", "pubsub",
    )
)
