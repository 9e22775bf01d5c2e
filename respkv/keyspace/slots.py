"""Redis Cluster hash slots: which of the 16384 slots a key belongs to.

Clients compute slots themselves, so this must match Redis exactly: CRC16-XMODEM
of the key (``binascii.crc_hqx`` with initial value 0) modulo 16384, where only the
text between the first ``{`` and the next ``}`` counts when that text is non-empty
(a "hash tag"), letting applications put related keys in one slot.
"""

from __future__ import annotations

from binascii import crc_hqx

SLOT_COUNT = 16384
SLOT_MASK = SLOT_COUNT - 1


def key_slot(key: bytes, _crc=crc_hqx) -> int:
    """The hash slot of ``key`` (0..16383).  The hash tag is found with int
    needles (``123`` is ``{``, ``125`` is ``}``), twice as fast as bytes ones
    for the tagged keys cluster clients send (``redis-benchmark --cluster`` tags
    every key); every write computes the slot several times on each replica."""
    if 123 in key:  # an int needle is ten times faster than a bytes one
        start = key.find(123)
        end = key.find(125, start + 1)
        if end > start + 1:
            return _crc(key[start + 1 : end], 0) & SLOT_MASK
    return _crc(key, 0) & SLOT_MASK
