"""Command families; importing a module registers its handlers (see ``table``)."""

#: Modules holding handlers, one per command family, imported by ``build_table``.
FAMILIES = ("transactions", "connection", "client", "server", "strings", "keys", "hashes", "sets", "zsets", "lists", "blocking_zsets", "cluster", "replication")
