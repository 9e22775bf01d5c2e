"""Replication: vector clocks, versions, quorums (pure) and the replica/coordinator shells."""
