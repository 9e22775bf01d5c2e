"""Command line entry point: ``python -m conformance`` from the repository root.

Starts a reference ``redis-server`` and a respkv node on free loopback ports, runs the
selected scripts from ``conformance/scripts/`` against both, and prints one line per
mismatch followed by the tally as the very last line (``N passed, M failed``). The exit
status is 0 only when nothing failed and at least one check passed, so CI cannot go
green on a run that compared nothing.

``--self-test`` puts a second ``redis-server`` where the respkv node would be. Any
difference then means a script depends on something nondeterministic (hash-table
order, time, client ids) and needs a marker or a rewrite.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from pathlib import Path

from tools.procs import ServerProcess, start_redis_server, start_respkv

from .runner import Runner, Side
from .script import ScriptError, load_script

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Differential conformance run: redis-server vs a respkv node.")
    parser.add_argument("-k", dest="select", action="append", default=[],
                        metavar="PATTERN",
                        help="run only scripts whose name contains PATTERN or matches "
                             "it as a glob (repeatable; any match selects)")
    parser.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                        help="leave out scripts matching PATTERN (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print every command and the reference reply")
    parser.add_argument("--self-test", action="store_true",
                        help="compare redis-server with a second redis-server instead "
                             "of a respkv node, to prove the scripts are deterministic")
    parser.add_argument("--respkv-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for the respkv node (repeatable; write "
                             "--respkv-arg=--flag for values that start with a dash)")
    parser.add_argument("--respkv-port", type=int, metavar="PORT",
                        help="compare against a node already listening on "
                             "127.0.0.1:PORT instead of starting one (it gets FLUSHALLed)")
    parser.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                        help="how long to wait for one reply (default 2)")
    parser.add_argument("--scripts-dir", type=Path, default=SCRIPTS_DIR, metavar="DIR",
                        help="where the *.txt scripts are (default: conformance/scripts)")
    return parser.parse_args(argv)


def _matches(name: str, pattern: str) -> bool:
    return pattern in name or fnmatch.fnmatchcase(name, pattern)


def select_scripts(directory: Path, select: list[str], skip: list[str]) -> list[Path]:
    """The script files to run, in name order, after ``-k`` and ``--skip``."""
    paths = sorted(directory.glob("*.txt"))
    if select:
        paths = [p for p in paths if any(_matches(p.stem, k) for k in select)]
    return [p for p in paths if not any(_matches(p.stem, s) for s in skip)]


def _log_tail(server: ServerProcess, lines: int = 20) -> str:
    for log in Path(server.workdir).glob("*.log"):
        text = log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])
    return ""


def _start_sides(args: argparse.Namespace, servers: list[ServerProcess]
                 ) -> tuple[Side, Side]:
    """Start the reference and the subject; started processes go into ``servers``."""
    reference = start_redis_server()
    servers.append(reference)
    if args.self_test:
        subject = start_redis_server()
        label = "redis-2"
    elif args.respkv_port:
        return (Side("redis", reference.port, args.timeout),
                Side("respkv", args.respkv_port, args.timeout))
    else:
        subject = start_respkv(args.respkv_arg)
        label = "respkv"
    servers.append(subject)
    return (Side("redis", reference.port, args.timeout),
            Side(label, subject.port, args.timeout))


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    paths = select_scripts(args.scripts_dir, args.select, args.skip)
    servers: list[ServerProcess] = []
    passed = failed = 0
    started = time.monotonic()
    try:
        scripts = []
        for path in paths:
            try:
                scripts.append(load_script(path))
            except ScriptError as exc:
                print(f"FAIL {path.name}:{exc.lineno}: script error: {exc.reason}")
                failed += 1
        try:
            runner = Runner(*_start_sides(args, servers), verbose=args.verbose)
        except (RuntimeError, TimeoutError, OSError) as exc:
            hint = "" if args.self_test else (
                " (start the node by hand, python -m respkv server --port PORT "
                "--bind 127.0.0.1 --dir DIR, to see why)")
            print(f"FAIL could not start servers: {exc}{hint}")
            print(f"{passed} passed, {failed + 1} failed")
            return 1
        for index, script in enumerate(scripts):
            runner.run_script(script)
            dead = [s for s in servers if s.proc.poll() is not None]
            if dead:
                rest = sum(s.check_count for s in scripts[index + 1:])
                for server in dead:
                    runner.fail(f"{script.name}.txt",
                                f"{server.name} exited with status "
                                f"{server.proc.returncode}; the {rest} checks of the "
                                f"remaining scripts count as failed; log tail:\n"
                                f"{_log_tail(server)}", 0)
                runner.failed += max(rest, 1)
                break
        passed += runner.passed
        failed += runner.failed
    finally:
        for server in servers:
            server.stop()
    elapsed = time.monotonic() - started
    print(f"{len(paths)} scripts against {'redis-2' if args.self_test else 'respkv'}"
          f" in {elapsed:.2f}s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
