"""CLIENT subcommands: identity, naming and library info, listing and killing connections.

Clients use these at connect time (redis-py 8 sends ``CLIENT SETINFO LIB-NAME`` and
``LIB-VER``) and operators use ``CLIENT LIST``/``CLIENT KILL``, so replies follow
Redis 7.0, with ``CLIENT SETINFO`` and the ``lib-name``/``lib-ver`` fields of
``CLIENT LIST`` taken from Redis 7.2, where they first appeared.

Every respkv connection is a "normal" client: there are no replicas, masters or
(yet) pub/sub clients, so type filters other than ``normal`` match nothing and the
subscription counters are 0.  Killing a connection other than the caller cancels
its session at once; the caller itself gets its reply before it is closed.
"""

from __future__ import annotations

import trio

from ..errors import SYNTAX
from ..keyspace.numbers import parse_int
from ..protocol import reply
from ..protocol.limits import RECV_SIZE
from .args import int_arg
from .connection import validate_client_name
from .table import CloseConnection, CommandError, command, container

container("client", "A container for client connection commands.", since="2.4.0")

#: Names CLIENT LIST/KILL accept after TYPE (``slave`` is the old name of ``replica``).
_CLIENT_TYPES = {b"normal": "normal", b"master": "master", b"replica": "replica",
                 b"slave": "replica", b"pubsub": "pubsub"}


def _client_type(session) -> str:
    return "normal" if session.subscriptions is None else "pubsub"


def _type_arg(raw: bytes) -> str:
    kind = _CLIENT_TYPES.get(raw.lower())
    if kind is None:
        raise CommandError(f"ERR Unknown client type '{raw.decode('latin-1')}'")
    return kind


def memory_parts(session) -> tuple[int, int, int, int]:
    """What ``session`` holds, as ``CLIENT LIST`` shows it: ``qbuf`` (unparsed
    input), ``argv-mem`` (complete arguments of a command still arriving),
    ``multi-mem`` (arguments queued since MULTI) and ``omem`` (pub/sub messages
    waiting for it).  Their sum is what client eviction counts."""
    reader = session.reader
    queued = getattr(session, "multi", None)
    multi_mem = sum(len(a) for _, queued_args in queued for a in queued_args) if queued else 0
    return (reader.buffered(), reader.pending_args_bytes(), multi_mem,
            session.node.pubsub.pending_bytes.get(session.id, 0))


def client_info_line(session, caller=None, caller_args: list[bytes] | None = None) -> str:
    """One ``CLIENT LIST`` line (without the trailing newline) for ``session``.

    Fields and their order are Redis 7.0.15's plus 7.2's ``lib-name``/``lib-ver``.
    Figures respkv does not track the way Redis does are reported as follows:
    ``qbuf`` is the unparsed input held by the session's reader and ``qbuf-free``
    0 (the reader keeps no spare room); ``argv-mem`` is the size of the arguments
    of the command being run (the caller's CLIENT command), or of the complete
    arguments of a command still arriving (as Redis); ``rbs`` is the size of
    one socket read and ``rbp`` 0; ``multi-mem`` is the size of the arguments
    queued since MULTI; ``omem`` is the pub/sub messages waiting for the client
    (replies are sent before the next request is read, so there is no other
    output buffer); ``tot-mem`` adds up the above.
    """
    now = trio.current_time()
    qbuf, argv_mem, multi_mem, omem = memory_parts(session)
    if session is caller and caller_args:
        argv_mem = sum(map(len, caller_args))
    idle = 0 if session is caller else max(0, int(now - session.last_interaction))
    try:
        fd = session.sock.fileno()
    except (AttributeError, OSError):
        fd = -1
    last = session.last_spec
    queued = getattr(session, "multi", None)  # commands queued since MULTI, if any
    subscribed = session.subscriptions
    fields = [
        ("id", session.id),
        ("addr", session.addr),
        ("laddr", session.laddr),
        ("fd", fd),
        ("name", session.name.decode("latin-1")),
        ("age", max(0, int(now - session.created))),
        ("idle", idle),
        ("flags", _flags(session, queued)),
        ("db", 0),
        *zip(("sub", "psub", "ssub"), map(len, subscribed.names) if subscribed is not None else (0, 0, 0)),
        ("multi", len(queued) if queued is not None else -1),
        ("qbuf", qbuf),
        ("qbuf-free", 0),
        ("argv-mem", argv_mem),
        ("multi-mem", multi_mem),
        ("rbs", RECV_SIZE),
        ("rbp", 0),
        ("obl", 0),
        ("oll", 0),
        ("omem", omem),
        ("tot-mem", qbuf + argv_mem + multi_mem + omem),
        ("events", "r"),
        ("cmd", last.name if last is not None else "NULL"),
        ("user", "default"),
        ("redir", -1 if session.tracking is None else session.tracking.redirect),
        ("resp", session.proto.version),
        ("lib-name", session.lib_name.decode("latin-1")),
        ("lib-ver", session.lib_ver.decode("latin-1")),
    ]
    return " ".join(f"{k}={v}" for k, v in fields)


def _text_reply(s, lines: list[str]) -> bytes:
    text = "".join(line + "\n" for line in lines).encode("latin-1")
    return s.proto.verbatim(text)


@command("client|id", "Returns the unique client ID of the connection.", since="5.0.0")
def client_id(s, args):
    return reply.integer(s.id)


@command("client|setname", "Sets the connection name.", since="2.6.9")
def client_setname(s, args):
    s.name = validate_client_name(args[2])
    return reply.OK


@command("client|getname", "Returns the name of the connection.", since="2.6.9")
def client_getname(s, args):
    return reply.bulk(s.name) if s.name else s.proto.null


def _valid_attribute(value: bytes) -> bool:
    # Printable ASCII without spaces, so CLIENT LIST stays splittable on spaces.
    return all(33 <= c <= 126 for c in value)


@command(
    "client|setinfo",
    "Sets information about the client library of the connection.",
    since="7.2.0",
    arity=4,
    flags=("noscript", "loading", "stale"),
    acl_categories=("@slow", "@connection"),
)
def client_setinfo(s, args):
    attribute = args[2].lower()
    if attribute not in (b"lib-name", b"lib-ver"):
        raise CommandError(f"ERR Unrecognized option '{args[2].decode('latin-1')}'")
    value = args[3]
    if not _valid_attribute(value):
        raise CommandError(f"ERR {args[2].decode('latin-1')} cannot contain spaces, newlines or special characters.")
    if attribute == b"lib-name":
        s.lib_name = value
    else:
        s.lib_ver = value
    return reply.OK


@command("client|info", "Returns information about the connection.", since="6.2.0")
def client_info(s, args):
    return _text_reply(s, [client_info_line(s, s, args)])


@command("client|list", "Lists open connections.", since="2.4.0")
def client_list(s, args):
    sessions = list(s.node.clients.values())
    n = len(args)
    if n == 2:
        chosen = sessions
    elif n == 4 and args[2].lower() == b"type":
        kind = _type_arg(args[3])
        chosen = [c for c in sessions if _client_type(c) == kind]
    elif n >= 4 and args[2].lower() == b"id":
        ids = []
        for raw in args[3:]:
            value = parse_int(raw)
            if value is None:
                raise CommandError("ERR Invalid client ID")
            ids.append(value)
        clients = s.node.clients
        chosen = [clients[i] for i in ids if i in clients]
    else:
        raise CommandError(SYNTAX)
    return _text_reply(s, [client_info_line(c, s, args) for c in chosen])


@command("client|no-evict", "Sets the client eviction mode of the connection.", since="7.0.0")
def client_no_evict(s, args):
    mode = args[2].lower()
    if mode == b"on":
        s.no_evict = True
    elif mode == b"off":
        s.no_evict = False
    else:
        raise CommandError(SYNTAX)
    return reply.OK


def _kill_filters(args: list[bytes]):
    """Parse ``CLIENT KILL <option> <value> ...`` into a predicate and SKIPME."""
    client_id = kind = addr = laddr = None
    skipme = True
    i = 2
    while i < len(args):
        option = args[i].lower()
        if i + 1 >= len(args):
            raise CommandError(SYNTAX)
        value = args[i + 1]
        if option == b"id":
            client_id = parse_int(value)
            if client_id is None or client_id < 1:
                raise CommandError("ERR client-id should be greater than 0")
        elif option == b"type":
            kind = _type_arg(value)
        elif option == b"addr":
            addr = value.decode("latin-1")
        elif option == b"laddr":
            laddr = value.decode("latin-1")
        elif option == b"user":
            if value != b"default":  # respkv has only the default user
                raise CommandError(f"ERR No such user '{value.decode('latin-1')}'")
        elif option == b"skipme":
            answer = value.lower()
            if answer == b"yes":
                skipme = True
            elif answer == b"no":
                skipme = False
            else:
                raise CommandError(SYNTAX)
        else:
            raise CommandError(SYNTAX)
        i += 2

    def matches(session) -> bool:
        return (
            (client_id is None or session.id == client_id)
            and (kind is None or _client_type(session) == kind)
            and (addr is None or session.addr == addr)
            and (laddr is None or session.laddr == laddr)
        )

    return matches, skipme


def _flags(session, queued) -> str:
    """CLIENT LIST's flags, in Redis's order: P (subscribed), x (in MULTI), b (blocked), t
    (tracking), R (tracking's redirect target gone), B (broadcast tracking), r
    (READONLY), e (CLIENT NO-EVICT on), or N."""
    tracking = session.tracking
    flags = (
        ("P" if session.subscriptions is not None else "")
        + ("x" if queued is not None else "")
        + ("b" if session.node.blocking.is_blocked(session) else "")
        + ("" if tracking is None else "t" + "R" * tracking.broken_redirect + "B" * tracking.bcast)
        + ("r" if session.readonly else "")
        + ("e" if session.no_evict else "")
    )
    return flags or "N"


@command("client|unblock", "Unblocks a client blocked by a blocking command.", since="5.0.0")
def client_unblock(s, args):
    client_id = int_arg(args[2])
    error = False
    if len(args) == 4:
        reason = args[3].upper()
        if reason not in (b"TIMEOUT", b"ERROR"):
            raise CommandError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
        error = reason == b"ERROR"
    elif len(args) > 4:
        raise CommandError(SYNTAX)
    target = s.node.clients.get(client_id)
    if target is None or not s.node.blocking.unblock(target, error=error):
        return reply.ZERO
    return reply.ONE


@command("client|kill", "Terminates open connections.", since="2.4.0")
def client_kill(s, args):
    sessions = list(s.node.clients.values())
    if len(args) == 3:
        # The original form: CLIENT KILL ip:port, replying OK or an error.
        wanted = args[2].decode("latin-1")
        for session in sessions:
            if session.addr == wanted:
                if session is s:
                    raise CloseConnection(reply.OK)
                session.kill()
                return reply.OK
        raise CommandError("ERR No such client")
    matches, skipme = _kill_filters(args)
    killed = 0
    kill_self = False
    for session in sessions:
        if not matches(session) or (skipme and session is s):
            continue
        killed += 1
        if session is s:
            kill_self = True
        else:
            session.kill()
    if kill_self:
        raise CloseConnection(reply.integer(killed))
    return reply.integer(killed)


_CLIENT_HELP = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]",
    "      Return clients of specified IDs only.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "HELP",
    "    Prints this help.",
]


@command("client|help", "Returns helpful text about the different subcommands.", since="5.0.0")
def client_help(s, args):
    return reply.help_lines(_CLIENT_HELP)
