"""Server commands: INFO, CONFIG, COMMAND, DBSIZE, FLUSHDB/FLUSHALL, TIME, SWAPDB.

(SAVE, BGSAVE, BGREWRITEAOF, LASTSAVE and SHUTDOWN are in :mod:`.persistence`.)

Stock tools lean on these before they send a single data command: redis-py reads
``COMMAND`` to learn key positions, redis-benchmark asks ``CONFIG GET save`` and
``CONFIG GET appendonly``, monitoring reads ``INFO``.  So replies keep Redis 7.0's
exact shapes (RESP2 and RESP3) and error texts.

``COMMAND`` renders the command table (``table.CommandSpec``) the way Redis does;
key-spec "notes" are not kept in the table, the one deliberate difference.
``COMMAND GETKEYS`` finds keys with the key-spec interpreter beside the table
(:mod:`respkv.commands.keyspecs`), as cluster routing does.

respkv has a single database (db 0): ``SWAPDB`` validates its arguments as Redis
does with ``databases 1``, so it refuses any index but 0.
"""

from __future__ import annotations

import os
import tempfile
import time

from ..config import DIRECTIVES, ConfigError
from ..errors import DB_INDEX_OUT_OF_RANGE, SYNTAX
from ..keyspace.glob import compile_glob
from ..keyspace.numbers import parse_int
from ..protocol import reply
from .info import build_info, sample_process, select_sections
from .keyspecs import command_keys, has_key_arguments
from .table import CommandError, CommandSpec, command, container


def _config_file(node) -> str:
    """Path of the config file the node was started with, or ``""``."""
    return getattr(node.config, "path", None) or ""


# ---------------------------------------------------------------------- INFO

@command("info", "Returns information and statistics about the server.", group="server")
def info(s, args):
    sections = select_sections(args[1:])
    text = build_info(s.node, sections, sample_process(), config_file=_config_file(s.node),
                      slots=s.visible_slots())
    return s.proto.verbatim(text)


# ---------------------------------------------------------------------- CONFIG

container("config", "A container for server configuration commands.", group="server", since="2.0.0")

_GLOB_CHARS = frozenset(b"*?[")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@command("config|get", "Returns the effective values of configuration parameters.", group="server", since="2.0.0")
def config_get(s, args):
    config = s.node.config
    found: dict[str, tuple[str, str]] = {}  # canonical name -> (name as shown, value)
    for raw in args[2:]:
        if not _GLOB_CHARS.intersection(raw):
            # A plain name is looked up directly and echoed as the client spelled it.
            name = _text(raw)
            canonical = name.lower()
            if canonical in DIRECTIVES and canonical not in found:
                found[canonical] = (name, config.get_text(canonical))
            continue
        match = compile_glob(raw, nocase=True)
        for name in DIRECTIVES:
            if name not in found and match(name.encode()):
                found[name] = (name, config.get_text(name))
    return s.proto.map([(reply.bulk(_raw(n)), reply.bulk(_raw(v))) for n, v in found.values()])


def _set_failed(name: str, why: str) -> CommandError:
    return CommandError(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")


@command("config|set", "Sets configuration parameters in-flight.", group="server", since="2.0.0")
def config_set(s, args):
    if len(args) % 2:
        raise CommandError(SYNTAX)
    pairs = [(_text(args[i]), _text(args[i + 1])) for i in range(2, len(args), 2)]
    # First every name (unknown, immutable, repeated), then every value, and only
    # then apply: like Redis, CONFIG SET changes all parameters or none.
    seen: set[str] = set()
    for name, _ in pairs:
        directive = DIRECTIVES.get(name.lower())
        if directive is None:
            raise CommandError(f"ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
        if not directive.mutable:
            raise _set_failed(name, "can't set immutable config")
        if directive.name in seen:
            raise _set_failed(name, "duplicate parameter")
        seen.add(directive.name)
    for name, value in pairs:
        directive = DIRECTIVES[name.lower()]
        try:
            directive.convert(value)
        except ConfigError as exc:
            raise _set_failed(directive.name, str(exc)) from None
    config = s.node.config
    for name, value in pairs:
        config.set_text(name.lower(), value)
    s.node.config_changed([DIRECTIVES[name.lower()].name for name, _ in pairs])  # e.g. appendfsync
    return reply.OK


@command("config|resetstat", "Resets the server's statistics.", group="server", since="2.0.0")
def config_resetstat(s, args):
    s.node.stats.reset()
    s.ks.expired_keys = 0
    s.ks.evicted_keys = 0
    return reply.OK


def _quote_value(value: str) -> str:
    """A directive value as a config-file token (double-quoted when needed)."""
    if value and not any(c.isspace() or c in "\"'\\#" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rewrite_config_file(config, path: str) -> None:
    """Write the current configuration back into ``path``, keeping its layout.

    Directive lines already in the file get the current value in place (later
    repeats of a directive are dropped); directives that differ from their
    default and are not in the file are appended.  Comments and blank lines stay.
    The file is replaced atomically.
    """
    try:
        with open(path, encoding="utf-8") as f:
            old_lines = f.read().splitlines()
    except FileNotFoundError:
        old_lines = []
    written: set[str] = set()
    lines: list[str] = []
    for line in old_lines:
        words = line.split(None, 1)
        name = words[0].lower() if words and not words[0].startswith("#") else None
        if name is None or name not in DIRECTIVES:
            lines.append(line)
            continue
        if name in written:
            continue
        written.add(name)
        lines.append(f"{name} {_quote_value(config.get_text(name))}")
    extra = [
        f"{name} {_quote_value(config.get_text(name))}"
        for name, directive in DIRECTIVES.items()
        if name not in written and config[name] != directive.default
    ]
    if extra:
        lines.append("# Generated by CONFIG REWRITE")
        lines.extend(extra)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".respkv-config-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@command("config|rewrite", "Persists the effective configuration to file.", group="server", since="2.8.0")
def config_rewrite(s, args):
    path = _config_file(s.node)
    if not path:
        raise CommandError("ERR The server is running without a config file")
    try:
        rewrite_config_file(s.node.config, path)
    except OSError as exc:
        raise CommandError(f"ERR Rewriting config file: {exc.strerror or exc}") from None
    return reply.OK


_CONFIG_HELP = [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
]


@command("config|help", "Returns helpful text about the different subcommands.", group="server", since="5.0.0")
def config_help(s, args):
    return reply.help_lines(_CONFIG_HELP)


# ---------------------------------------------------------------------- COMMAND: rendering

_INFO_CACHE: dict[tuple[CommandSpec, int], bytes] = {}


def _encode_spec_value(proto, key: str, value) -> bytes:
    if key == "flags":
        return proto.set([reply.simple(f) for f in value])
    if isinstance(value, dict):
        return proto.map([(reply.bulk(k.encode()), _encode_spec_value(proto, k, v)) for k, v in value.items()])
    if isinstance(value, int):
        return reply.integer(value)
    return reply.bulk(str(value).encode())


def command_info(proto, spec: CommandSpec) -> bytes:
    """One command's ``COMMAND INFO`` entry, exactly in Redis 7.0's layout."""
    cache_key = (spec, proto.version)
    cached = _INFO_CACHE.get(cache_key)
    if cached is not None:
        return cached
    subcommands = spec.subcommands.values()
    encoded = reply.array([
        reply.bulk(spec.name.encode()),
        reply.integer(spec.arity),
        proto.set([reply.simple(f) for f in spec.flags]),
        reply.integer(spec.first_key),
        reply.integer(spec.last_key),
        reply.integer(spec.step),
        proto.set([reply.simple(c) for c in spec.acl_categories]),
        proto.set([reply.bulk(t.encode()) for t in spec.tips]),
        proto.set([_encode_spec_value(proto, "", ks) for ks in spec.key_specs]),
        reply.array([command_info(proto, sub) for sub in subcommands]) if subcommands else proto.set([]),
    ])
    _INFO_CACHE[cache_key] = encoded
    return encoded


def command_docs(proto, spec: CommandSpec) -> bytes:
    """One command's ``COMMAND DOCS`` map: our summary, since, group, subcommands."""
    fields = [
        (reply.bulk(b"summary"), reply.bulk(spec.summary.encode())),
        (reply.bulk(b"since"), reply.bulk(spec.since.encode())),
        (reply.bulk(b"group"), reply.bulk(spec.group.encode())),
    ]
    if spec.subcommands:
        fields.append((reply.bulk(b"subcommands"), proto.map([
            (reply.bulk(sub.name.encode()), command_docs(proto, sub)) for sub in spec.subcommands.values()
        ])))
    return proto.map(fields)


def find_command(table, name: bytes) -> CommandSpec | None:
    """Look up ``name`` or ``container|sub`` (any case), as COMMAND INFO/DOCS do."""
    parts = name.split(b"|")
    if len(parts) > 2:
        return None
    spec = table.lookup(parts[0])
    if spec is None or len(parts) == 1:
        return spec
    return spec.subcommands.get(parts[1].lower())


def _all_specs(table):
    """Every command and subcommand, each container followed by its subcommands."""
    for spec in table:
        yield spec
        yield from spec.subcommands.values()


def _getkeys(s, args, with_flags: bool) -> bytes:
    argv = args[2:]
    spec = s.node.table.lookup(argv[0])
    if spec is not None and spec.subcommands and len(argv) >= 2:
        spec = spec.subcommands.get(argv[1].lower())
    if spec is None:
        raise CommandError("ERR Invalid command specified")
    if not has_key_arguments(spec):
        raise CommandError("ERR The command has no key arguments")
    n = len(argv)
    if (spec.arity > 0 and spec.arity != n) or n < -spec.arity:
        raise CommandError("ERR Invalid number of arguments specified for command")
    keys = command_keys(spec, argv)
    if not keys:
        if "no_mandatory_keys" in spec.flags:
            return reply.EMPTY_ARRAY
        raise CommandError("ERR Invalid arguments specified for command")
    if not with_flags:
        return reply.bulk_array([argv[i] for i, _ in keys])
    proto = s.proto
    return reply.array([
        reply.array([reply.bulk(argv[i]), proto.set([reply.simple(f) for f in flags])])
        for i, flags in keys
    ])


# ---------------------------------------------------------------------- COMMAND: handlers

@command("command", "Returns detailed information about all commands.", group="server", since="2.8.13")
def command_all(s, args):
    proto = s.proto
    return reply.array([command_info(proto, spec) for spec in s.node.table])


@command("command|count", "Returns a count of commands.", group="server", since="2.8.13")
def command_count(s, args):
    return reply.integer(len(s.node.table))


@command("command|info", "Returns information about one, multiple or all commands.", group="server", since="2.8.13")
def command_info_cmd(s, args):
    proto = s.proto
    table = s.node.table
    if len(args) == 2:
        return reply.array([command_info(proto, spec) for spec in table])
    items = []
    for name in args[2:]:
        spec = find_command(table, name)
        items.append(proto.null if spec is None else command_info(proto, spec))
    return reply.array(items)


@command("command|docs", "Returns documentary information about one, multiple or all commands.",
         group="server", since="7.0.0")
def command_docs_cmd(s, args):
    proto = s.proto
    table = s.node.table
    if len(args) == 2:
        specs = list(table)
    else:
        specs = [spec for spec in (find_command(table, name) for name in args[2:]) if spec is not None]
    return proto.map([(reply.bulk(spec.name.encode()), command_docs(proto, spec)) for spec in specs])


@command("command|getkeys", "Extracts the key names from an arbitrary command.", group="server", since="2.8.13")
def command_getkeys(s, args):
    return _getkeys(s, args, with_flags=False)


@command("command|getkeysandflags", "Extracts the key names and access flags for an arbitrary command.",
         group="server", since="7.0.0")
def command_getkeysandflags(s, args):
    return _getkeys(s, args, with_flags=True)


@command("command|list", "Returns a list of command names.", group="server", since="7.0.0")
def command_list(s, args):
    n = len(args)
    if n == 2:
        wanted = lambda spec: True  # noqa: E731
    elif n == 5 and args[2].lower() == b"filterby":
        kind, value = args[3].lower(), args[4]
        if kind == b"module":
            wanted = lambda spec: False  # noqa: E731  (respkv loads no modules)
        elif kind == b"aclcat":
            category = "@" + value.decode("latin-1").lower()
            wanted = lambda spec: category in spec.acl_categories  # noqa: E731
        elif kind == b"pattern":
            match = compile_glob(value, nocase=True)
            wanted = lambda spec: match(spec.name.encode())  # noqa: E731
        else:
            raise CommandError(SYNTAX)
    else:
        raise CommandError(SYNTAX)
    return reply.bulk_array([spec.name.encode() for spec in _all_specs(s.node.table) if wanted(spec)])


_COMMAND_HELP = [
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
    "HELP",
    "    Prints this help.",
]


@command("command|help", "Returns helpful text about the different subcommands.", group="server", since="5.0.0")
def command_help(s, args):
    return reply.help_lines(_COMMAND_HELP)


# ---------------------------------------------------------------------- keyspace-wide

@command("dbsize", "Returns the number of keys in the database.", group="server")
def dbsize(s, args):
    return reply.integer(s.ks.dbsize(s.visible_slots()))


def _check_flush_args(args: list[bytes]) -> None:
    # FLUSHDB/FLUSHALL [ASYNC|SYNC]; respkv always flushes at once, either way.
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        raise CommandError(SYNTAX)


@command("flushdb", "Removes all keys from the current database.", group="server")
def flushdb(s, args):
    _check_flush_args(args)
    s.ks.flush()
    s.node.tracking.flushed()
    return reply.OK


@command("flushall", "Removes all keys from all databases.", group="server")
def flushall(s, args):
    _check_flush_args(args)
    s.ks.flush()
    s.node.tracking.flushed()  # one message, after the keys' own (which it supersedes)
    return reply.OK


@command("time", "Returns the server time.", group="server", since="2.6.0")
def time_cmd(s, args):
    micros = time.time_ns() // 1000
    return reply.bulk_array([b"%d" % (micros // 1_000_000), b"%d" % (micros % 1_000_000)])


_INT32 = range(-(2**31), 2**31)


@command("swapdb", "Swaps two databases (respkv has only database 0).", group="server", since="4.0.0")
def swapdb(s, args):
    first = parse_int(args[1])
    if first is None or first not in _INT32:
        raise CommandError("ERR invalid first DB index")
    second = parse_int(args[2])
    if second is None or second not in _INT32:
        raise CommandError("ERR invalid second DB index")
    databases = s.node.config["databases"]
    if not (0 <= first < databases and 0 <= second < databases):
        raise CommandError(DB_INDEX_OUT_OF_RANGE)
    return reply.OK  # swapping database 0 with itself changes nothing
