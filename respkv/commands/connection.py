"""Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET.

These change the state of the session itself (protocol version, authentication,
name) rather than data.  Client names are validated here for ``HELLO ... SETNAME``
and by ``CLIENT SETNAME`` alike.
"""

from __future__ import annotations

import hmac

from ..errors import DB_INDEX_OUT_OF_RANGE, NOT_INTEGER, SYNTAX, wrong_arity
from ..keyspace.numbers import parse_int
from ..protocol import reply
from ..protocol.reply import RESP2, RESP3
from .table import CloseConnection, CommandError, command

WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
BAD_CLIENT_NAME = "ERR Client names cannot contain spaces, newlines or special characters."
_NO_PASSWORD = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
_HELLO_NOAUTH = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time"
)


def validate_client_name(name: bytes) -> bytes:
    """Redis allows printable ASCII without spaces in client names."""
    if any(c < 33 or c > 126 for c in name):
        raise CommandError(BAD_CLIENT_NAME)
    return name


def check_password(s, username: bytes, password: bytes) -> bool:
    """True if ``username``/``password`` authenticate as the default user."""
    required = s.node.config["requirepass"]
    if username != b"default":
        return False
    if not required:
        return True  # the default user has no password
    return hmac.compare_digest(password, required.encode())


@command("ping", "Returns the server's liveliness response.")
def ping(s, args):
    if len(args) > 2:
        raise CommandError(wrong_arity("ping"))
    if s.subscriptions is not None and s.proto.version == 2:  # the subscribed context: an array
        return b"*2\r\n$4\r\npong\r\n" + (reply.EMPTY_BULK if len(args) == 1 else reply.bulk(args[1]))
    return reply.PONG if len(args) == 1 else reply.bulk(args[1])


@command("echo", "Returns the given string.")
def echo(s, args):
    return reply.bulk(args[1])


@command("auth", "Authenticates the connection.")
def auth(s, args):
    if len(args) > 3:
        raise CommandError(SYNTAX)
    if len(args) == 2:
        if not s.node.config["requirepass"]:
            raise CommandError(_NO_PASSWORD)
        username, password = b"default", args[1]
    else:
        username, password = args[1], args[2]
    if not check_password(s, username, password):
        raise CommandError(WRONGPASS)
    s.set_authenticated(True)
    return reply.OK


@command("hello", "Handshakes with the server, optionally switching protocol and authenticating.")
def hello(s, args):
    version = None
    if len(args) >= 2:
        version = parse_int(args[1])
        if version is None:
            raise CommandError("ERR Protocol version is not an integer or out of range")
        if version < 2 or version > 3:
            raise CommandError("NOPROTO unsupported protocol version")
    credentials = None
    name = None
    i = 2
    while i < len(args):
        opt = args[i].upper()
        if opt == b"AUTH" and i + 2 < len(args):
            credentials = (args[i + 1], args[i + 2])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(args):
            name = validate_client_name(args[i + 1])
            i += 2
        else:
            raise CommandError(f"ERR Syntax error in HELLO option '{args[i].decode('latin-1')}'")
    if credentials is not None:
        if not check_password(s, *credentials):
            raise CommandError(WRONGPASS)
        s.set_authenticated(True)
    elif not s.authenticated:
        raise CommandError(_HELLO_NOAUTH)
    if name is not None:
        s.name = name
    if version is not None:
        s.proto = RESP3 if version == 3 else RESP2
    node = s.node
    return s.proto.map([
        (reply.bulk(b"server"), reply.bulk(b"redis")),
        (reply.bulk(b"version"), reply.bulk(node.redis_version.encode())),
        (reply.bulk(b"proto"), reply.integer(s.proto.version)),
        (reply.bulk(b"id"), reply.integer(s.id)),
        (reply.bulk(b"mode"), reply.bulk(node.mode.encode())),
        (reply.bulk(b"role"), reply.bulk(b"master")),
        (reply.bulk(b"modules"), reply.EMPTY_ARRAY),
    ])


@command("select", "Changes the selected database (respkv has only database 0).")
def select(s, args):
    index = parse_int(args[1])
    if index is None:
        raise CommandError(NOT_INTEGER)
    if index != 0:
        raise CommandError(DB_INDEX_OUT_OF_RANGE)
    return reply.OK


@command("quit", "Closes the connection.")
def quit_(s, args):
    raise CloseConnection(reply.OK)


@command("reset", "Resets the connection to its initial state.")
def reset(s, args):
    s.reset()
    return b"+RESET\r\n"
