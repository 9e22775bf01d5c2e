"""Sizes shared by everything that reads RESP from a socket.

The request reader's own limits (inline request size, bulk length, query buffer)
live with it in :mod:`respkv.protocol.reader`; this module holds what the layers
above it agree on without depending on each other.
"""

#: Bytes asked of a socket per receive: client sessions, blocked clients and the
#: cluster proxy's upstream connections read this much at a time (``CLIENT LIST``
#: reports it as a connection's ``rbs``).
RECV_SIZE = 64 * 1024
