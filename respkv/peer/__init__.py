"""The cluster bus: authenticated node-to-node requests over RESP on the bus port.

A transport only: gossip and the replication coordinator send their operations over
it, and it knows nothing of them.
"""
