"""Who may connect: Redis's protected mode, decided from values alone.

With ``protected-mode yes`` (the default) and no ``requirepass``, a node answers a
client that does not connect from a loopback address with Redis 7.0's ``-DENIED``
error and closes the connection before reading anything from it, as Redis does
when the default user has no password.  Loopback means ``127.0.0.0/8``, ``::1``
and IPv4-mapped ``::ffff:127.x.y.z``.  Setting a password or ``CONFIG SET
protected-mode no`` lifts it for the connections accepted afterwards.

The same loopback test tells a session whether it is a *local* client, for
``enable-debug-command local`` (see ``replication.commands``).
"""

from __future__ import annotations

import ipaddress

#: Redis 7.0's reply to a client refused by protected mode, sent before closing.
#: (The numbered advice works here as written: respkv has CONFIG SET, CONFIG
#: REWRITE, configuration files, ``--protected-mode no`` and requirepass.)
DENIED = (
    b"-DENIED Redis is running in protected mode because protected mode is enabled and no password "
    b"is set for the default user. In this mode connections are only accepted from the loopback "
    b"interface. If you want to connect from external computers to Redis you may adopt one of the "
    b"following solutions: 1) Just disable protected mode sending the command 'CONFIG SET "
    b"protected-mode no' from the loopback interface by connecting to Redis from the same host the "
    b"server is running, however MAKE SURE Redis is not publicly accessible from internet if you do "
    b"so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable "
    b"the protected mode by editing the Redis configuration file, and setting the protected mode "
    b"option to 'no', and then restarting the server. 3) If you started the server manually just "
    b"for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication "
    b"password for the default user. NOTE: You only need to do one of the above things in order for "
    b"the server to start accepting connections from the outside.\r\n"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a peer's IP address as text) is a loopback address.

    IPv4-mapped IPv6 addresses count as their IPv4 address; an IPv6 zone suffix
    (``fe80::1%eth0``) is ignored; anything that is not an IP address is not
    loopback.
    """
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def host_of(addr: str) -> str:
    """The host part of a formatted peer address: ``1.2.3.4:5`` or ``[::1]:5``."""
    if addr.startswith("["):
        return addr[1:].partition("]")[0]
    return addr.rpartition(":")[0]


def protected_mode_denies(protected_mode: bool, requirepass: str, host: str) -> bool:
    """Whether a client connecting from ``host`` is refused by protected mode."""
    return bool(protected_mode) and not requirepass and not is_loopback(host)
