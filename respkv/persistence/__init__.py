"""Durability: the on-disk formats of the commit log, snapshots and the manifest.

* :mod:`~respkv.persistence.framing`: entry framing and the scanner that tells a
  clean end from a torn tail and from corruption (pure);
* :mod:`~respkv.persistence.files`: chunked reading, atomic file replacement;
* :mod:`~respkv.persistence.log`: the commit log, with group commit and Redis's
  fsync policies, and its loader;
* :mod:`~respkv.persistence.snapshot`: snapshots, written atomically and
  incrementally;
* :mod:`~respkv.persistence.manifest`: which snapshot and logs make up the state,
  and the steps of a rewrite.

This layer imports nothing above ``respkv.config``; only the log's fsync loop uses
trio.
"""
