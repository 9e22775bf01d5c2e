"""What the fuzzer sends: the hostile corpus, valid and mutated commands, random bytes.

A *frame* is a few bytes a client might send: a valid command (RESP or inline), a
valid command with a few bytes inserted, deleted or replaced (type bytes, huge
numbers, ``\\r``, ``\\n``, NUL), random bytes, or an entry of the hostile corpus
(:func:`hostile_corpus`: every RESP type byte as a header at absurd sizes, deep
nesting, huge lines).  Pure: random generators in, bytes out.  The long-run tool
(:mod:`tools.fuzz`) and the CI test (``tests/test_hostile_input.py``) share it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

CRLF = b"\r\n"

# -- the corpus --------------------------------------------------------------------

#: Every RESP2/RESP3 type byte, and some bytes that are no type at all.
TYPE_BYTES = b"*$%~>|+-:_,#(=!"
OTHER_BYTES = b"\x00\x07 a9@\x7f\xff"
#: Sizes a hostile header announces: past every limit, at the limits, negative,
#: ``-0``, leading zeros, too many digits, not a number.
HUGE_SIZES = (
    b"536870913", b"536870912", b"2147483648", b"2147483647", b"4294967296",
    b"9223372036854775807", b"9223372036854775808", b"18446744073709551616",
    b"100000000", b"99999999999999999999999999999", b"-1", b"-2", b"-2147483649",
    b"-0", b"0", b"00", b"0001", b"-01", b"+5", b" 5", b"1e9", b"",
)
#: The headers of the original report: 16 bytes that made the node allocate 4 GB,
#: and the one that crashed the reader.
REPORTED = (b"*1\r\n>536870913\r\n", b"*1\r\n%1\r\n")
#: The first argument of the requests before a hostile frame, and their replies.
PREFIX_ARGS = ([b"PING"], [b"ECHO", b"hello"], [b"SET", b"fz:prefix", b"v"], [b"GET", b"fz:prefix"])
PREFIX_REPLIES = b"+PONG\r\n$5\r\nhello\r\n+OK\r\n$1\r\nv\r\n"


@dataclass(frozen=True)
class Case:
    """One hostile frame of the corpus, named for the reports."""

    name: str
    data: bytes


def encode(args: list[bytes]) -> bytes:
    """A request as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def hostile_corpus(mutations: int = 120, seed: int = 0) -> list[Case]:
    """The frames every node must survive, for a node without a password."""
    cases = [Case(f"reported {i}", data) for i, data in enumerate(REPORTED)]
    for t in TYPE_BYTES + OTHER_BYTES:
        tb = bytes([t])
        for size in HUGE_SIZES:
            header = tb + size + CRLF
            cases.append(Case(f"{tb!r}{size.decode()} alone", header))
            cases.append(Case(f"{tb!r}{size.decode()} as an argument", b"*1\r\n" + header))
        for size in (b"536870913", b"2147483648", b"-1", b"0001"):
            header = tb + size + CRLF
            cases.append(Case(f"{tb!r}{size.decode()} as third argument",
                              b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n" + header))
            cases.append(Case(f"{tb!r}{size.decode()} after an array header", b"*536870913\r\n" + header))
    # A bulk whose announced length is off puts the next header anywhere: Redis and
    # hiredis skip the two bytes after a payload without looking at them.
    for t in TYPE_BYTES:
        tb = bytes([t])
        for size in (b"536870913", b"9999", b"3"):
            cases.append(Case(f"{tb!r}{size.decode()} after a bulk with a bad trailer",
                              b"*2\r\n$6\r\nSTRLEN\r5" + tb + size + CRLF))
            cases.append(Case(f"{tb!r}{size.decode()} after a bulk two bytes long",
                              b"*2\r\n$3\r\nGETxx" + tb + size + CRLF + b"$1\r\na\r\n"))
    cases += [
        Case("*1 nested 5000 deep", b"*1\r\n" * 5000),
        Case("*1 nested 5000 deep around PING", b"*1\r\n" * 5000 + b"$4\r\nPING\r\n"),
        Case("*9999 then one bulk, 2000 times", b"*9999\r\n$1\r\na\r\n" * 2000),
        Case("*9999 headers 5000 times", b"*9999\r\n" * 5000),
        Case("*2 arrays nested through their second element", b"*2\r\n$1\r\na\r\n" * 3000),
        Case("INT_MAX arguments announced, one sent", b"*2147483647\r\n$1\r\na\r\n"),
        Case("array of 1024 empty bulks", b"*1024\r\n" + b"$0\r\n\r\n" * 1024),
        Case("valid header then missing CRLF", b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n"),
        Case("CR without LF after a count", b"*1\rX$4\r\nPING\r\n"),
        Case("CR without LF after a length", b"*1\r\n$4\rXPING\r\n"),
        Case("NUL before a count's CR", b"*1\x00\r\n$4\r\nPING\r\n"),
        Case("NUL as a bulk header", b"*1\r\n\x00\r\n"),
        Case("empty bulk header line", b"*1\r\n\r\n"),
        Case("NUL hiding an inline newline", b"PING\x00\r\nPING\r\n"),
        Case("NUL inside a command name", encode([b"PI\x00NG", b"a\x00b"])),
        Case("unbalanced double quote", b'SET "a b\r\n'),
        Case("unbalanced single quote", b"SET 'a b\r\n"),
        Case("closing quote followed by a letter", b'ECHO "a"b\r\n'),
        Case("huge inline line without newline", b"a" * (1 << 20)),
        Case("huge inline line with newline", b"a" * (1 << 20) + CRLF),
        Case("huge line of spaces", b" " * 300_000 + CRLF),
        Case("huge line of quotes", b'"' * 300_000 + CRLF),
        Case("huge inline line behind a NUL", b"PING\x00" + b"a" * 300_000 + CRLF),
        Case("count with 300000 digits", b"*" + b"1" * 300_000 + CRLF),
        Case("bulk length with 300000 digits", b"*1\r\n$" + b"9" * 300_000 + CRLF),
        Case("bulk announced at the limit, 1 MiB sent", b"*1\r\n$536870912\r\n" + b"x" * (1 << 20)),
    ]
    rng = random.Random(seed)
    for i in range(mutations):
        cases.append(Case(f"mutation {i}", mutated_frame(rng)))
    return cases


def unauthenticated_corpus() -> list[Case]:
    """Frames for a node with a password, from a client that has not authenticated."""
    bulks = lambda n: b"".join(b"$1\r\na\r\n" for _ in range(n))  # noqa: E731
    return [
        Case("11 arguments announced", b"*11\r\n"),
        Case("11 arguments", b"*11\r\n" + bulks(11)),
        Case("10 arguments", b"*10\r\n" + bulks(10)),
        Case("huge count", b"*536870913\r\n"),
        Case("bulk of 16385 announced", b"*1\r\n$16385\r\n"),
        Case("bulk of 16384", b"*1\r\n$16384\r\n" + b"x" * 16384 + CRLF),
        Case("AUTH with a bulk of 16385", b"*2\r\n$4\r\nAUTH\r\n$16385\r\n"),
        Case("huge bulk announced", b"*1\r\n$536870912\r\n"),
        Case("inline with 11 words", b"a " * 11 + CRLF),
        Case("inline with 10 words", b"a " * 10 + CRLF),
        Case("inline of 20 KiB", b"ECHO " + b"x" * 20_000 + CRLF),
        Case("huge inline line", b"a" * (1 << 20)),
        Case("PING", encode([b"PING"])),
        *[Case(f"reported {i}", data) for i, data in enumerate(REPORTED)],
    ]


def huge_header_frames() -> list[bytes]:
    """Short frames announcing the most memory, for many connections at once.

    Some are refused at once; the others leave the node waiting for elements or
    bytes that never come, holding the connection open.
    """
    frames = list(REPORTED)
    for size in (b"536870913", b"2147483647", b"9223372036854775807", b"100000000"):
        for t in b"*%~>|$":
            frames.append(b"*1\r\n" + bytes([t]) + size + CRLF)
            frames.append(bytes([t]) + size + CRLF)
            # Behind a bulk whose trailer is not CRLF (see hostile_corpus).
            frames.append(b"*2\r\n$6\r\nSTRLEN\r5" + bytes([t]) + size + CRLF)
    frames += [
        b"*2147483647\r\n$1\r\na\r\n",
        b"*1\r\n$536870912\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\nabc",
        b"*1\r\n" * 4096,
        b"*9999\r\n$1\r\na\r\n" * 64,
    ]
    return frames


# -- generators --------------------------------------------------------------------

#: Words of commands that block, change the node's configuration or state as a
#: whole, or scan every key: never sent, whatever a mutation produced.
_UNSAFE = re.compile(
    rb"shutdown|debug|config|flush|replica|slaveof|cluster|failover|monitor|subscribe|sync|save|"
    rb"rewrite|client|blpop|brpop|bzpop|blmove|blmpop|bzmpop|wait|xread|migrate|script|eval|"
    rb"function|acl|keys|module|sleep|hello|multi|exec|select|swapdb|auth|quit|reset|sort|scan",
    re.IGNORECASE,
)


def is_safe(frame: bytes) -> bool:
    """True unless the frame might name a command that blocks or reconfigures a node."""
    return _UNSAFE.search(frame) is None


_ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _value(rng: random.Random) -> bytes:
    return bytes(rng.choice(_ALNUM) for _ in range(rng.randrange(1, 24)))


#: Commands with deterministic replies on a few keys of each type (S string, N
#: counter, H hash, T set, L list; F field, M member, I small integer, V value).
_TEMPLATES = tuple(t.split() for t in (
    b"PING", b"PING V", b"ECHO V", b"SET S V", b"GET S", b"MGET S S", b"STRLEN S", b"GETRANGE S 0 I",
    b"DEL S", b"EXISTS S H", b"INCR N", b"INCRBY N I", b"HSET H F V", b"HGET H F", b"HLEN H",
    b"SADD T M", b"SCARD T", b"SISMEMBER T M", b"RPUSH L V", b"LTRIM L 0 7", b"LLEN L", b"LINDEX L I",
    b"TYPE S",
))


def valid_command(rng: random.Random) -> list[bytes]:
    """A well-formed request on a small, bounded set of keys."""
    fill = {
        b"S": lambda: b"fz:s%d" % rng.randrange(8), b"N": lambda: b"fz:n%d" % rng.randrange(8),
        b"H": lambda: b"fz:h%d" % rng.randrange(8), b"T": lambda: b"fz:t%d" % rng.randrange(8),
        b"L": lambda: b"fz:l%d" % rng.randrange(8), b"F": lambda: b"f%d" % rng.randrange(8),
        b"M": lambda: b"m%d" % rng.randrange(8), b"I": lambda: b"%d" % rng.randrange(-4, 8),
        b"V": lambda: _value(rng),
    }
    return [fill[word]() if word in fill else word for word in rng.choice(_TEMPLATES)]


def valid_frame(rng: random.Random) -> bytes:
    """A valid command, encoded as RESP (mostly) or as an inline command."""
    args = valid_command(rng)
    if rng.random() < 0.2:
        return b" ".join(args) + (CRLF if rng.random() < 0.8 else b"\n")
    return encode(args)


_SPECIAL = (b"\r\n", b"\r", b"\n", b"\x00", b" ", b'"', b"'", b"\\")


def mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` with one to three bytes or runs inserted, deleted or replaced."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        pos = rng.randrange(len(buf) + 1)
        op = rng.randrange(8)
        if op == 0:
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif op == 1:
            buf[pos:pos] = bytes([rng.choice(TYPE_BYTES)]) + rng.choice(HUGE_SIZES[:14]) + CRLF
        elif op == 2:
            del buf[pos:pos + rng.randrange(1, 4)]
        elif op == 3 and pos < len(buf):
            buf[pos] = rng.choice(TYPE_BYTES + OTHER_BYTES)
        elif op == 4:
            digits = [m.span() for m in re.finditer(rb"[0-9]+", buf)]
            if digits:
                start, end = rng.choice(digits)
                buf[start:end] = rng.choice(HUGE_SIZES)
        elif op == 5:
            buf[pos:pos] = rng.choice(_SPECIAL)
        elif op == 6:
            end = min(len(buf), pos + rng.randrange(1, 16))
            buf[pos:pos] = buf[pos:end]
        else:
            del buf[pos:]
    return bytes(buf)


def mutated_frame(rng: random.Random) -> bytes:
    """A mutation of a valid frame (never an unsafe one)."""
    while True:
        frame = mutate(rng, valid_frame(rng))
        if frame and is_safe(frame):
            return frame


_NOISE = TYPE_BYTES + OTHER_BYTES + b"0123456789\r\n\r\n\r\n$$$***abcPING "


def random_frame(rng: random.Random) -> bytes:
    """A few random bytes, drawn mostly from type bytes, digits and line ends."""
    while True:
        n = rng.randrange(1, 48)
        if rng.random() < 0.5:
            frame = bytes(rng.choice(_NOISE) for _ in range(n))
        else:
            frame = bytes(rng.randrange(256) for _ in range(n))
        if is_safe(frame):
            return frame


FRAME_KINDS = ("valid", "mutated", "random", "corpus")


def fuzz_frame(rng: random.Random, corpus: list[Case]) -> tuple[str, bytes]:
    """One frame for the fuzzer, and its kind."""
    x = rng.random()
    if x < 0.5:
        return "valid", valid_frame(rng)
    if x < 0.85:
        return "mutated", mutated_frame(rng)
    if x < 0.97:
        return "random", random_frame(rng)
    return "corpus", rng.choice(corpus).data


def split_chunks(rng: random.Random, data: bytes, most: int = 4) -> list[bytes]:
    """``data`` cut at up to ``most`` random places."""
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(most + 1)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]
