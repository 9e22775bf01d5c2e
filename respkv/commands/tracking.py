"""CLIENT TRACKING, CACHING, GETREDIR and TRACKINGINFO: the commands of
server-assisted client-side caching (the registry is :mod:`respkv.net.tracking`).

Options, their checks and their error texts follow Redis 7.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SYNTAX
from ..keyspace.numbers import parse_int
from ..protocol import reply
from .table import CommandError, command


@dataclass
class TrackingState:
    """One connection's tracking options (the session holds None while off)."""

    redirect: int = 0
    bcast: bool = False
    optin: bool = False
    optout: bool = False
    noloop: bool = False
    prefixes: list[bytes] = field(default_factory=list)
    #: ``CLIENT CACHING yes|no`` was sent: applies to the next command only.
    caching: bool = False
    #: The redirect target went away (reported once, then flagged).
    broken_redirect: bool = False


def prefix_overlap(prefixes: list[bytes], others: list[bytes]) -> tuple[bytes, bytes] | None:
    """A pair (one of ``prefixes``, one of ``others``) where one starts with the
    other, or None: Redis refuses overlapping prefixes for one client."""
    for prefix in prefixes:
        for other in others:
            if prefix.startswith(other) or other.startswith(prefix):
                return prefix, other
    return None


def parse_tracking(args: list[bytes], clients: dict, own_id: int) -> TrackingState | None:
    """The options of ``CLIENT TRACKING ON|OFF ...`` (None for OFF), checked as
    Redis checks them on their own; :func:`check_switch` checks them against
    the connection's current ones."""
    switch = args[2].lower()
    if switch not in (b"on", b"off"):
        raise CommandError(SYNTAX)
    state = TrackingState()
    redirect = None
    i = 3
    while i < len(args):
        option = args[i].lower()
        more = i + 1 < len(args)
        if option == b"redirect" and more:
            i += 1
            if redirect is not None:
                raise CommandError("ERR A client can only redirect to a single other client")
            redirect = parse_int(args[i])
            if redirect is None:
                raise CommandError("ERR value is not an integer or out of range")
            if redirect not in clients:
                raise CommandError("ERR The client ID you want redirect to does not exist")
            state.redirect = redirect if redirect != own_id else 0
        elif option == b"bcast":
            state.bcast = True
        elif option == b"optin":
            state.optin = True
        elif option == b"optout":
            state.optout = True
        elif option == b"noloop":
            state.noloop = True
        elif option == b"prefix" and more:
            i += 1
            state.prefixes.append(args[i])
        else:
            raise CommandError(SYNTAX)
        i += 1
    if switch == b"off":
        return None
    if state.prefixes and not state.bcast:
        raise CommandError("ERR PREFIX option requires BCAST mode to be enabled")
    if state.bcast and (state.optin or state.optout):
        raise CommandError("ERR OPTIN and OPTOUT are not compatible with BCAST")
    if state.optin and state.optout:
        raise CommandError("ERR You can't specify both OPTIN mode and OPTOUT mode")
    for at, prefix in enumerate(state.prefixes):
        clash = prefix_overlap([prefix], state.prefixes[at + 1:])
        if clash is not None:
            raise CommandError(_overlap("another provided", *clash))
    return state


def _overlap(whose: str, prefix: bytes, other: bytes) -> str:
    return (f"ERR Prefix '{prefix.decode('latin-1')}' overlaps with {whose} prefix "
            f"'{other.decode('latin-1')}'. Prefixes for a single client must not overlap.")


def check_switch(current: TrackingState, new: TrackingState) -> None:
    """Refuse changing the mode of tracking that is on, as Redis does."""
    if current.bcast != new.bcast:
        raise CommandError("ERR You can't switch BCAST mode on/off before disabling tracking for this client, "
                           "and then re-enabling it with a different mode.")
    if (new.optin and current.optout) or (new.optout and current.optin):
        raise CommandError("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, "
                           "and then re-enabling it with a different mode.")
    clash = prefix_overlap(new.prefixes, current.prefixes)
    if clash is not None:
        raise CommandError(_overlap("an existing", *clash))


@command("client|tracking", "Controls server-assisted client-side caching for the connection.", since="6.0.0")
def client_tracking(s, args):
    state = parse_tracking(args, s.node.clients, s.id)
    registry = s.node.tracking
    if state is None:
        registry.disable(s)
        return reply.OK
    if s.tracking is not None:
        check_switch(s.tracking, state)
    registry.enable(s, state)
    return reply.OK


@command("client|caching", "Instructs the server whether to track the keys in the next request.",
         since="6.0.0")
def client_caching(s, args):
    state = s.tracking
    if state is None or not (state.optin or state.optout):
        raise CommandError("ERR CLIENT CACHING can be called only when the client is in tracking mode with "
                           "OPTIN or OPTOUT mode enabled")
    answer = args[2].lower()
    if answer == b"yes":
        if not state.optin:
            raise CommandError("ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.")
    elif answer == b"no":
        if not state.optout:
            raise CommandError("ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")
    else:
        raise CommandError(SYNTAX)
    state.caching = True
    return reply.OK


@command("client|getredir", "Returns the client ID to which the connection's tracking notifications "
         "are redirected.", since="6.0.0")
def client_getredir(s, args):
    """-1 while tracking is off, 0 when messages go to the connection itself."""
    return reply.integer(-1 if s.tracking is None else s.tracking.redirect)


@command("client|trackinginfo", "Returns information about server-assisted client-side caching for "
         "the connection.", since="6.2.0")
def client_trackinginfo(s, args):
    proto = s.proto
    state = s.tracking
    if state is None:
        flags = [b"off"]
    else:
        flags = [b"on"] + [name for name, on in (
            (b"bcast", state.bcast), (b"optin", state.optin), (b"optout", state.optout),
            (b"caching-yes", state.caching and state.optin), (b"caching-no", state.caching and state.optout),
            (b"noloop", state.noloop), (b"broken_redirect", state.broken_redirect),
        ) if on]
    return proto.map([
        (reply.bulk(b"flags"), proto.set([reply.bulk(flag) for flag in flags])),
        (reply.bulk(b"redirect"), reply.integer(-1 if state is None else state.redirect)),
        (reply.bulk(b"prefixes"), reply.bulk_array(state.prefixes if state is not None else [])),
    ])
