"""Sans-IO reader of client requests: bytes in, argument lists out.

Theory of operation
-------------------
A client sends either multibulk requests (``*<n>\\r\\n`` followed by ``n`` bulk
strings) or inline commands (one line of space-separated, optionally quoted words).
Redis answers every complete request in the order received and, on a malformed one,
replies ``-ERR Protocol error: <reason>`` once and closes the connection.

Two parsers share this job:

* The **fast path** hands a received chunk to ``hiredis`` and pulls the finished
  arrays out of it.  hiredis parses RESP replies, not requests: it is more
  permissive than Redis (nested arrays, maps, pushes, integers, simple strings) and
  it preallocates a list (or dict) for every aggregate header it meets, from the
  announced count, before any element has arrived.  So no chunk reaches hiredis
  before :func:`fast_path_safe` has passed it: the **guard**, which bounds what
  hiredis can allocate for the chunk to a small multiple of its length, wherever
  its aggregate headers are, and keeps the types hiredis returns as ``bytes``
  (simple strings, verbatim strings, big numbers) at line starts away from it.  The
  fast path also only keeps the result when the chunk held whole requests, and only
  while the client is authenticated.  It does not look inside the requests:
  checking every argument here would cost as much as running a GET.
  Its consumer runs a request only once it is well formed (:func:`well_formed`:
  a non-empty list of ``bytes``) — the session checks each request it dispatches,
  and a run handler the arguments it takes — and on the first one that is not,
  calls :meth:`RequestReader.reparse`, which gives the rest of the chunk to the
  exact path (that then says what Redis would).  The guard lives in
  :mod:`respkv.protocol.guard`.
* The **exact path** is a small state machine written to Redis's own rules (error
  texts, limits, inline commands, the unauthenticated limits).  It never allocates
  from an announced length: bulks are sliced out of the buffer once fully arrived.

Pipelining clients and benchmarks send whole requests per read, so nearly every
chunk takes the fast path.  The fast path returns a chunk's requests only once it
has seen the whole chunk parse cleanly; anything else — a chunk ending inside a
request, an inline command, something hiredis rejects — hands the whole chunk to
the exact path, which carries on until its buffer drains at a request boundary;
then the fast path resumes.  Batches from the exact path are always well formed.
Both paths agree on every ordinary request, so the switch is invisible to the
client.

The cluster bus (:mod:`respkv.peer.wire`) parses its frames with this same
reader (``inline=False``), behind a guard that bounds allocation as the client
guard does but leaves out the refusals that only keep the fast path's errors
identical to Redis's (:func:`~respkv.protocol.guard.bus_chunk_safe`): the bus's
binary records trip them at random.

Header lines end where Redis ends them (:func:`_header_end`): at the first
``\\r``, whose next byte is skipped unseen, unless a NUL byte comes first (Redis
searches with ``strchr``).  hiredis wants ``\\r\\n`` and a strict number, so a
header it accepts has neither a ``\\r`` nor a NUL before its ``\\r\\n``: both paths
agree on every chunk the fast path keeps.  Leading zeros (``*01``, ``$03``) and
``-0`` are refused by both, as by Redis.

Known leniency: after a bulk whose announced length is off by a few bytes, Redis
and hiredis both read the next header where the payload's last bytes put it.
If a simple string, verbatim string or big number header lands there
(``*2\\r\\n$3\\r\\nGETxx+foo\\r\\n``), the fast path runs ``GET foo`` where Redis
replies ``expected '$', got '+'``.  Refusing every chunk with a ``+``, ``=`` or
``(`` anywhere would send ordinary values (base64, URLs, text) to the exact path,
about ten times slower per request; and the request run is one the client could
have sent well formed.  (Aggregate headers are safe anywhere: see the guard.)
"""

from __future__ import annotations

from collections.abc import Callable

import hiredis

from .guard import GUARD_OVERLAP, big_bulk_search, fast_path_safe
from .inline import split_inline

#: Redis's limits (``PROTO_INLINE_MAX_SIZE``, ``proto-max-bulk-len``,
#: ``client-query-buffer-limit``, and the pre-AUTH limits).
INLINE_MAX = 64 * 1024
DEFAULT_MAX_BULK = 512 * 1024 * 1024
DEFAULT_MAX_QUERY_BUFFER = 1024 * 1024 * 1024
UNAUTH_MAX_ARGS = 10
UNAUTH_MAX_BULK = 16 * 1024
_INT_MAX = 2**31 - 1

#: What hiredis's ``gets`` answers while no whole request is buffered.
_NO_REPLY = object()
#: An empty request, fed after a chunk to learn whether it ended between requests.
_PROBE = b"*0\r\n"
#: Longest unfinished request kept for the fast path (``keep_tails``).
_TAIL_MAX = 256 * 1024
#: A kept tail up to this long is copied with whatever the next chunk brings; a
#: longer one only with a chunk at least half its length (else the exact path).
_TAIL_COPY_FREE = 16 * 1024


class ProtocolError(Exception):
    """A malformed request; ``str(exc)`` is Redis's reason text."""


class QueryBufferFull(Exception):
    """The client sent more unparsed bytes than the query-buffer limit."""


def _header_end(buf: bytearray, pos: int) -> int:
    """Where Redis ends the header line that starts at ``pos``: the index of its ``\\r``.

    Redis finds it with ``strchr(..., '\\r')`` and then skips two bytes, so a NUL
    before the ``\\r`` hides it, and the byte after it only has to have arrived.
    Returns -1 when there is no such ``\\r`` (the size limit then applies) and -2
    when it is the last byte received.
    """
    cr = buf.find(b"\r", pos)
    if cr < 0 or buf.find(b"\0", pos, cr) >= 0:
        return -1
    if cr + 1 == len(buf):
        return -2
    return cr


def _parse_length(raw: bytes | bytearray) -> int | None:
    """Parse a header number with Redis's ``string2ll`` strictness."""
    if not raw or len(raw) > 20:
        return None
    if raw[0] == 45:  # '-'
        digits = raw[1:]
        if digits[:1] == b"0":  # "-0" and "-01" are refused, as by string2ll
            return None
    else:
        digits = raw
    if not digits or not digits.isdigit() or (digits[0] == 48 and len(digits) > 1):
        return None
    return int(raw)


def well_formed(request) -> bool:
    """Whether a request from the fast path is one Redis takes: a non-empty list of bytes."""
    if request.__class__ is not list or not request:
        return False
    try:
        b"".join(request)  # raises TypeError unless every argument is bytes
    except TypeError:
        return False
    return True


def _encoded_length(batch: list) -> int:
    """The length of ``batch``'s requests in canonical RESP, -1 if one of them is
    not :func:`well_formed` (the per-argument work is done in C)."""
    offset = 0
    for request in batch:
        if not well_formed(request):
            return -1
        # "*<n>\r\n", then "$<size>\r\n<arg>\r\n" per argument.
        count = len(request)
        offset += (
            3 + len(str(count)) + 5 * count
            + sum(map(len, request)) + sum(map(len, map(str, map(len, request))))
        )
    return offset


class RequestReader:
    """Incremental request parser for one client connection.

    Call :meth:`parse` with received bytes, then :meth:`read_batch` until
    :attr:`idle` or an empty batch (more data needed).  Both raise
    :class:`ProtocolError` for a malformed request (the caller replies and closes)
    and :class:`QueryBufferFull` when the unparsed input outgrows ``max_query_buffer``.
    A batch from :meth:`parse` may hold requests that are not :func:`well_formed`:
    run them in order up to the first such one, then continue with
    :meth:`reparse` (see the module documentation).
    """

    __slots__ = (
        "_hiredis", "_exact", "_buf", "_pos", "_argc", "_args", "_args_size", "_bulklen",
        "_error", "_big_bulk", "_last_chunk", "_rest", "_tail",
        "max_bulk", "max_query_buffer", "unauthenticated", "inline", "keep_tails", "idle", "guard",
    )

    def __init__(
        self,
        *,
        max_bulk: int = DEFAULT_MAX_BULK,
        max_query_buffer: int = DEFAULT_MAX_QUERY_BUFFER,
        unauthenticated: bool = False,
        inline: bool = True,
        keep_tails: bool = False,
        guard: Callable[[bytes, bool], bool] = fast_path_safe,
    ) -> None:
        self.max_bulk = max_bulk
        #: ``guard(chunk, continued)``: may hiredis parse the chunk (see
        #: :mod:`~respkv.protocol.guard`; the cluster bus bounds allocation only).
        self.guard = guard
        #: Whether an unfinished request at the end of a fast-path chunk waits, as
        #: bytes, for the next chunk to be parsed with it by the fast path (see
        #: :meth:`_keep_batch_and_tail`); for peers that send only canonical frames.
        self.keep_tails = keep_tails
        #: Whether inline commands are taken (clients); the bus takes arrays only.
        self.inline = inline
        self.max_query_buffer = max_query_buffer
        #: While True the pre-AUTH limits apply and only the exact path runs.
        self.unauthenticated = unauthenticated
        self._big_bulk = big_bulk_search(max_bulk)
        self._hiredis = hiredis.Reader(notEnoughData=_NO_REPLY)
        self._exact = False
        self._buf = bytearray()
        self._pos = 0
        self._argc = -1  # -1: at a request boundary in the exact path
        self._args: list[bytes] = []
        #: Bytes of the arguments collected so far for the unfinished request; they
        #: count towards the query-buffer limit, as the buffer they came from did.
        self._args_size = 0
        self._bulklen = -1
        self._error: ProtocolError | None = None
        #: The chunk behind the last fast-path batch, for :meth:`reparse`.
        self._last_chunk: bytes | None = None
        #: The rest of a chunk whose first request the exact path finished, for
        #: the fast path (see :meth:`_continue_exact`); None when there is none.
        self._rest: bytes | None = None
        #: An unfinished request kept for the fast path (``keep_tails``), or None.
        self._tail: bytes | None = None
        #: True when every byte received has been returned as requests: calling
        #: :meth:`read_batch` again before the next :meth:`parse` would find nothing.
        self.idle = True

    def parse(self, data: bytes) -> list[list[bytes]]:
        """Take received bytes; return the first batch of complete requests.

        An empty batch means more data is needed.  Unless :attr:`idle` is then True,
        more requests may be waiting: call :meth:`read_batch` for them.
        """
        if self._exact:
            return self._continue_exact(data)
        tail = self._tail
        if tail is not None:
            # hiredis holds the tail already: it is only fed the new bytes, but the
            # guard and a fallback to the exact path see the request whole.
            self._tail = None
            self.idle = True
            if len(tail) > 2 * len(data) and len(tail) > _TAIL_COPY_FREE:
                # Arriving in small pieces: copying and scanning the tail for each
                # would be quadratic; the exact path takes the request in linear time.
                return self._to_exact(tail + data)
            return self._parse_chunk(tail + data, data, max(0, len(tail) - GUARD_OVERLAP))
        return self._parse_chunk(data)

    def _parse_chunk(self, data: bytes, new: bytes | None = None, guarded: int = 0) -> list[list[bytes]]:
        """:meth:`parse` for a chunk that starts at a request boundary; ``new`` is
        its part hiredis has not been fed yet when that is not all of it, and the
        guard passed ``data[:guarded]`` before (a kept tail: only the rest, from a
        little before the new bytes, needs its look)."""
        if (
            self.unauthenticated
            or not (self.guard(data[guarded:], True) if guarded else self.guard(data, False))
            or (len(data) > self.max_bulk and self._big_bulk(data))
        ):
            if new is not None:
                return self._to_exact(data)  # a fresh hiredis too
            self.feed(data)
            return self._exact_batch()
        hiredis_reader = self._hiredis
        hiredis_reader.feed(data if new is None else new)
        try:
            batch = list(iter(hiredis_reader.gets, _NO_REPLY))
            # Did the chunk end between two requests?  Bytes hiredis has not taken
            # say no.  Otherwise hiredis may still hold the header of an array whose
            # elements have not arrived: then the probe (an empty request) becomes
            # one of them instead of coming back as an empty list of its own.
            if hiredis_reader.has_data():
                if self.keep_tails:
                    return self._batch_and_tail(data, batch, False)
                return self._keep_batch_and_tail(data, batch)
            hiredis_reader.feed(_PROBE)
            try:
                probe = hiredis_reader.gets()
            except Exception:  # the chunk ended after a type byte: the probe broke it
                probe = None
            if probe.__class__ is not list or probe:
                if self.keep_tails:  # the probe went into an unfinished request
                    return self._batch_and_tail(data, batch, True)
                return self._to_exact(data)
        except Exception:  # hiredis.ProtocolError, or a shape it cannot build
            return self._to_exact(data)
        self._last_chunk = data
        return batch

    def _continue_exact(self, data: bytes) -> list[list[bytes]]:
        """More bytes while the exact path holds an unfinished request.

        The exact path finishes that request; the rest of its buffer, which then
        starts at a request boundary, goes back to the fast path (at the next
        :meth:`read_batch`) instead of staying with the exact path until a chunk
        happens to end between two requests.  A stream whose chunks often end
        inside a request (the cluster bus's large frames, deep pipelines) would
        otherwise be parsed almost entirely by the exact path, many times slower.
        Each chunk gets at most this one extra look by the guard.
        """
        self.feed(data)
        if self.unauthenticated or self._error is not None:
            return self._exact_batch()
        request = self._exact_next()
        if request is None or not self._exact:
            return [] if request is None else [request]
        rest = self._buf[self._pos :]
        self._exact = False
        self._buf = bytearray()
        self._pos = 0
        self._last_chunk = None
        if rest:
            self._rest = bytes(rest)
        else:
            self.idle = True
        return [request]

    def parse_all(self, data: bytes, requests: list | None = None) -> list[list[bytes]]:
        """Take received bytes; append every complete request, each well formed, to
        ``requests`` (a new list if None) and return it.

        For consumers that do not run requests as they go (the cluster bus): the
        fast path's batches are checked here, and the exact path takes over from
        the first request that is not well formed (:meth:`reparse`).  Raises like
        :meth:`parse`; ``requests`` then holds the requests before the bad one.
        """
        if requests is None:
            requests = []
        batch = self.parse(data)
        while batch:
            for index, request in enumerate(batch):
                if not well_formed(request):
                    requests += batch[:index]
                    batch = self.reparse(index)
                    break
            else:
                requests += batch
                batch = self.read_batch() if not self.idle else []
        return requests

    def reparse(self, served: int) -> list[list[bytes]]:
        """Give the rest of the last fast-path chunk to the exact path.

        For a consumer that found request ``served`` of the batch :meth:`parse`
        returned not :func:`well_formed`: the exact path parses the chunk again,
        skips the ``served`` requests before it (already run) and returns the batch
        from there on, or raises the :class:`ProtocolError` Redis would give.
        """
        chunk, self._last_chunk = self._last_chunk, None
        if chunk is None:  # exact-path batches are always well formed
            raise ProtocolError("malformed request")
        self._start_exact(chunk)
        for _ in range(served):
            self._exact_next()
        return self._exact_batch()

    def feed(self, data: bytes) -> None:
        """Add received bytes to the exact path's buffer (:meth:`parse` does the rest)."""
        self.idle = False
        if self._exact:
            self._buf += data
        else:
            self._exact = True
            self._buf = bytearray(data)
            self._pos = 0

    def read_batch(self) -> list[list[bytes]]:
        """Return the next batch of complete requests (empty: more data needed).

        A malformed request ends the batch before it; the following call raises
        :class:`ProtocolError` for it, so the requests before it get answered first.
        While :attr:`unauthenticated`, at most one request is returned per call, so
        that an ``AUTH`` takes effect before the requests behind it are parsed.
        """
        if self._exact:
            return self._exact_batch()
        if self._tail is not None:
            return []  # the rest of the unfinished request has not arrived
        rest = self._rest
        if rest is not None:
            self._rest = None
            self.idle = True  # until the chunk's parse says otherwise
            return self._parse_chunk(rest)
        return []

    def _keep_batch_and_tail(self, chunk: bytes, batch: list) -> list[list[bytes]]:
        """The chunk ended inside a request: keep hiredis's whole requests, and give
        only the unfinished one to the exact path.

        Where the unfinished request starts is the length of the requests before it
        as their canonical encoding; if the chunk does not have a request start
        there (a request that was not well formed, or not canonically encoded),
        the exact path parses the whole chunk instead.
        """
        offset = _encoded_length(batch)
        if offset < 0 or offset >= len(chunk) or chunk[offset] != 42:
            return self._to_exact(chunk)
        self._start_exact(chunk[offset:])
        self._last_chunk = None
        # An empty batch would tell the caller to wait for more data: let the exact
        # path look at the tail now (it may already be malformed).
        return batch if batch else self._exact_batch()

    def _batch_and_tail(self, chunk: bytes, batch: list, refeed: bool) -> list[list[bytes]]:
        """``keep_tails``: hiredis parsed ``chunk`` into ``batch``; if the chunk
        ended inside a request, hiredis keeps what it has of it and the bytes wait
        in :attr:`_tail` for the next chunk (a tail longer than :data:`_TAIL_MAX`
        goes to the exact path, which takes long bulks without copying them over
        and over, and so does one that may announce a bulk over ``max_bulk``).

        Where the unfinished request starts is the length of the requests before
        it as their canonical encoding, which is how peers send them; a chunk
        without a request start there goes to the exact path whole.  ``refeed``:
        hiredis's state is spoilt (it took the probe), so a new one gets the tail.
        """
        offset = _encoded_length(batch)
        if offset < 0 or offset >= len(chunk) or chunk[offset] != 42:
            return self._to_exact(chunk)
        tail = chunk[offset:]
        if len(tail) > min(_TAIL_MAX, self.max_query_buffer) or self._big_bulk(tail):
            # Too long, or announcing a bulk that may be over the limit: the exact
            # path says so now.
            self._start_exact(tail)
            self._last_chunk = None
            return batch if batch else self._exact_batch()
        if refeed:
            self._hiredis = hiredis.Reader(notEnoughData=_NO_REPLY)
            self._hiredis.feed(tail)
        self._tail = tail
        self._last_chunk = chunk
        self.idle = False
        return batch

    def _to_exact(self, chunk: bytes) -> list[list[bytes]]:
        """Parse ``chunk`` again, with the exact path."""
        self._start_exact(chunk)
        return self._exact_batch()

    def _start_exact(self, chunk: bytes) -> None:
        """Make ``chunk`` the exact path's buffer, with a fresh hiredis for later."""
        self.idle = False
        self._buf = bytearray(chunk)
        self._pos = 0
        self._argc = -1
        self._args_size = 0
        self._hiredis = hiredis.Reader(notEnoughData=_NO_REPLY)
        self._exact = True

    def _exact_batch(self) -> list[list[bytes]]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        batch = []
        try:
            while (req := self._exact_next()) is not None:
                batch.append(req)
                if self.unauthenticated or not self._exact:
                    break
        except ProtocolError as exc:
            if not batch:
                raise
            self._error = exc
        return batch

    def pending_args_bytes(self) -> int:
        """Bytes of the complete arguments of a request still arriving (they count
        towards the query-buffer limit, and towards what the client holds)."""
        return self._args_size

    def buffered(self) -> int:
        """Bytes received but not yet returned as requests (for CLIENT LIST ``qbuf``)."""
        if self._exact:
            return len(self._buf)
        if self._tail is not None:
            return len(self._tail)
        return 0 if self._rest is None else len(self._rest)

    # -- exact path ---------------------------------------------------------------

    def _exact_next(self) -> list[bytes] | None:
        buf = self._buf
        while True:
            if self._argc < 0:
                req = self._start_request(buf)
                if req is None:
                    break
                if req is _EMPTY:
                    continue
                if req is not _MULTIBULK:
                    return req
            req = self._continue_multibulk(buf)
            if req is None:
                break
            if req:
                return req
        if self._pos >= len(buf):
            # Drained at a boundary: hand the stream back to the fast path.
            if self._argc < 0 and not self.unauthenticated:
                self.idle = True
                self._exact = False
                self._buf = bytearray()
                self._pos = 0
            elif self._pos:
                del buf[: self._pos]
                self._pos = 0
        elif self._pos > 65536:
            del buf[: self._pos]
            self._pos = 0
        if len(buf) + self._args_size > self.max_query_buffer:
            raise QueryBufferFull()
        return None

    def _start_request(self, buf: bytearray):
        """At a boundary: return an inline request, _EMPTY, _MULTIBULK or None."""
        pos = self._pos
        if pos >= len(buf):
            return None
        if buf[pos] != 42:  # not '*': inline
            if not self.inline:
                raise ProtocolError(f"expected '*', got '{chr(buf[pos])}'")
            nl = buf.find(b"\n", pos)
            if nl >= 0 and buf.find(b"\0", pos, nl) >= 0:
                nl = -1  # Redis looks for the newline with strchr: a NUL hides it
            if nl < 0:
                if len(buf) - pos > INLINE_MAX:
                    raise ProtocolError("too big inline request")
                return None
            end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
            line = bytes(buf[pos:end])
            self._pos = nl + 1
            args = split_inline(line)
            if args is None:
                raise ProtocolError("unbalanced quotes in request")
            # No pre-AUTH argument limit: Redis has none for inline requests (their
            # size limit bounds them).
            return args if args else _EMPTY
        cr = buf.find(13, pos)  # the header's end (see _header_end)
        if cr < 0 or cr + 1 == len(buf):
            if _header_end(buf, pos) == -1 and len(buf) - pos > INLINE_MAX:
                raise ProtocolError("too big mbulk count string")
            return None
        count = _parse_length(buf[pos + 1 : cr])
        if count is None or count > _INT_MAX:
            if buf.find(0, pos, cr) >= 0:  # a NUL hides the "\r" from Redis
                if len(buf) - pos > INLINE_MAX:
                    raise ProtocolError("too big mbulk count string")
                return None
            raise ProtocolError("invalid multibulk length")
        self._pos = cr + 2
        if count <= 0:
            return _EMPTY
        if self.unauthenticated and count > UNAUTH_MAX_ARGS:
            raise ProtocolError("unauthenticated multibulk length")
        self._argc = count
        self._args = []
        self._args_size = 0
        self._bulklen = -1
        return _MULTIBULK

    def _continue_multibulk(self, buf: bytearray) -> list[bytes] | None:
        """Collect bulks of the current multibulk; the args when complete, else None."""
        args = self._args
        pos = self._pos
        end = len(buf)
        while len(args) < self._argc:
            if self._bulklen < 0:
                cr = buf.find(13, pos)  # the header's end (see _header_end)
                if cr < 0 or cr + 1 == end:
                    self._pos = pos
                    if _header_end(buf, pos) == -1 and end - pos > INLINE_MAX:
                        raise ProtocolError("too big bulk count string")
                    return None
                size = _parse_length(buf[pos + 1 : cr]) if buf[pos] == 36 else None  # '$'
                if size is None or size < 0 or size > self.max_bulk:
                    self._pos = pos
                    if buf.find(0, pos, cr) >= 0:  # a NUL hides the "\r" from Redis
                        if end - pos > INLINE_MAX:
                            raise ProtocolError("too big bulk count string")
                        return None
                    if buf[pos] != 36:
                        raise ProtocolError(f"expected '$', got '{chr(buf[pos])}'")
                    raise ProtocolError("invalid bulk length")
                if self.unauthenticated and size > UNAUTH_MAX_BULK:
                    raise ProtocolError("unauthenticated bulk length")
                self._bulklen = size
                pos = cr + 2
            size = self._bulklen
            if end - pos < size + 2:
                self._pos = pos
                return None
            args.append(bytes(buf[pos : pos + size]))
            self._args_size += size
            pos += size + 2
            self._bulklen = -1
        self._pos = pos
        self._argc = -1
        self._args = []
        self._args_size = 0
        return args


_EMPTY = object()
_MULTIBULK = object()
