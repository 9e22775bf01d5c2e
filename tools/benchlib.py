"""Shared pieces of the benchmark drivers (``tools.bench`` and ``tools.membench``).

Both drivers run the stock ``redis-benchmark`` against server processes started
with :mod:`tools.procs`, and both write a JSON record of the run. What they have
in common lives here, once:

* running ``redis-benchmark`` with ``--csv`` while watching the server under test,
  and turning every kind of failure into :class:`BenchmarkFailed`. This matters
  because ``redis-benchmark`` does not give up when its server goes away: it spins
  forever, printing nothing. So the server's process is polled during each run and
  a wall-clock limit applies on top;
* a minimal RESP client for the odd command a driver needs (``DBSIZE``), with no
  client library in between that might send handshake commands of its own;
* machine facts, result paths and JSON writing, so every result file carries the
  context needed to compare it with another one.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from respkv import launcher
from tools.procs import ServerProcess

#: Where result files go unless the caller names one; ignored by git.
RESULTS_DIR = "bench-results"

#: stderr lines that redis-benchmark prints for servers that lack ``CONFIG GET``.
#: They are kept as warnings in the results and do not fail the run.
_BENIGN_STDERR = (re.compile(r"^WARNING: Could not fetch server CONFIG\s*$"),)

#: Text that means a run went wrong, wherever it shows up in the output.
_ERROR_PATTERN = re.compile(
    r"error|\bERR\b|could not connect|connection refused|connection reset|"
    r"server closed|unexpected|invalid",
    re.IGNORECASE,
)


#: What ``redis-benchmark --cluster`` prints on stdout before the CSV header: a
#: ``Cluster has N master nodes:`` line and one ``Master I: <node-id> <ip>:<port>``
#: line per master.  Only these, and only before the header, are skipped.
_CLUSTER_PREAMBLE = re.compile(r"^(Cluster has \d+ master nodes:|Master \d+: [0-9a-f]{40} \S+:\d+)$")


class BenchmarkFailed(RuntimeError):
    """A benchmark run did not produce trustworthy numbers."""


# --------------------------------------------------------------------------- #
# redis-benchmark
# --------------------------------------------------------------------------- #


@dataclass
class BenchmarkRun:
    """The parsed outcome of one ``redis-benchmark --csv`` invocation."""

    argv: list[str]
    #: One dict per CSV row, keyed by the CSV header (``test``, ``rps``, ...);
    #: numeric columns are floats.
    rows: list[dict]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, label: str) -> dict:
        """The row whose ``test`` column is exactly ``label``."""
        for row in self.rows:
            if row["test"] == label:
                return row
        seen = ", ".join(repr(r["test"]) for r in self.rows) or "none"
        raise BenchmarkFailed(f"redis-benchmark printed no row {label!r} (rows: {seen})")


def benchmark_binary() -> str:
    """Path of ``redis-benchmark``, or a clear error when it is missing."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise BenchmarkFailed("redis-benchmark is not installed (it comes with redis-tools)")
    return binary


def parse_csv(text: str) -> list[dict]:
    """Parse the rows of ``redis-benchmark --csv`` output.

    The output is a header line (``"test","rps","avg_latency_ms",...``) followed
    by one quoted row per test, after the list of masters that ``--cluster``
    runs print first. Any other non-blank line is unexpected and makes the parse
    fail, because it is usually an error message.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    while lines and _CLUSTER_PREAMBLE.match(lines[0].strip()):
        lines.pop(0)
    if not lines:
        raise BenchmarkFailed("redis-benchmark printed nothing on stdout")
    reader = csv.reader(io.StringIO("\n".join(lines)))
    header = next(reader)
    if not header or header[0] != "test" or "rps" not in header:
        raise BenchmarkFailed(f"unexpected redis-benchmark header: {lines[0]!r}")
    rows = []
    for fields in reader:
        if len(fields) != len(header):
            raise BenchmarkFailed(f"unexpected redis-benchmark output line: {fields!r}")
        row: dict = {}
        for name, value in zip(header, fields):
            if name == "test":
                row[name] = value
                continue
            try:
                row[name] = float(value)
            except ValueError:
                raise BenchmarkFailed(
                    f"non-numeric {name}={value!r} in redis-benchmark row {fields!r}"
                ) from None
        rows.append(row)
    return rows


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return "(no log)"


def server_log_tail(server: ServerProcess) -> str:
    """The end of a server's log file, for error messages."""
    return _tail(os.path.join(server.workdir, f"{server.name}.log"))


def start_server(
    what: str, start: Callable[[list[str]], ServerProcess], args: list[str]
) -> ServerProcess:
    """Call one of the :mod:`tools.procs` starters, reporting failure as
    :class:`BenchmarkFailed` so the drivers can record it and exit non-zero."""
    try:
        return start(args)
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise BenchmarkFailed(f"could not start {what}: {exc}") from exc


def check_alive(servers: Iterable[ServerProcess]) -> None:
    """Raise :class:`BenchmarkFailed` if any of ``servers`` has exited."""
    for server in servers:
        code = server.proc.poll()
        if code is not None:
            raise BenchmarkFailed(
                f"{server.name} server (pid {server.pid}, port {server.port}) exited "
                f"with status {code}; end of its log:\n{server_log_tail(server)}"
            )


def run_redis_benchmark(
    server: ServerProcess,
    args: Sequence[str],
    *,
    watch: Sequence[ServerProcess] = (),
    timeout: float = 600.0,
) -> BenchmarkRun:
    """Run ``redis-benchmark --csv`` with ``args`` against ``server``.

    ``server`` and every process in ``watch`` are polled while the benchmark
    runs; if one exits, the benchmark is killed and the run fails. The run also
    fails on a non-zero exit status, on a timeout, on any error text in the
    output, and on CSV rows that report no throughput. Known harmless warnings
    are returned in :attr:`BenchmarkRun.warnings`.
    """
    argv = [benchmark_binary(), "-h", "127.0.0.1", "-p", str(server.port), "--csv", *args]  # a command comes last
    watched = [server, *(w for w in watch if w is not server)]
    check_alive(watched)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            try:
                check_alive(watched)
            except BenchmarkFailed as exc:
                raise BenchmarkFailed(f"while running {' '.join(argv)}: {exc}") from None
            if time.monotonic() - started > timeout:
                raise BenchmarkFailed(
                    f"redis-benchmark did not finish within {timeout:.0f}s: {' '.join(argv)}"
                )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    seconds = time.monotonic() - started

    warnings, errors = [], []
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        if any(p.match(line) for p in _BENIGN_STDERR):
            warnings.append(line)
        else:
            errors.append(line)
    errors.extend(
        line.strip() for line in stdout.splitlines()
        if _ERROR_PATTERN.search(line) and not line.startswith('"test"')
    )
    if proc.returncode != 0 or errors:
        detail = "\n".join(errors) or stdout.strip()[-2000:] or "(no output)"
        raise BenchmarkFailed(
            f"redis-benchmark failed (exit status {proc.returncode}): {' '.join(argv)}\n{detail}"
        )
    check_alive(watched)
    rows = parse_csv(stdout)
    for row in rows:
        if not row.get("rps", 0) > 0:
            raise BenchmarkFailed(f"redis-benchmark reported no throughput: {row}")
    return BenchmarkRun(argv=argv, rows=rows, warnings=warnings, seconds=seconds)


# --------------------------------------------------------------------------- #
# One command to a server
# --------------------------------------------------------------------------- #


def command(port: int, *args: str | bytes | int, timeout: float = 30.0, password: str | None = None):
    """Send one command to ``127.0.0.1:port`` over RESP2 and return the reply
    (after ``AUTH password`` on the same connection, when given).

    Deliberately tiny (the launcher's one-shot client): a client library would send
    handshake commands (``HELLO``, ``CLIENT SETINFO``) that a server under
    development may not implement yet, and the drivers only need a number or two
    back.  Error replies and a connection closed mid-reply are benchmark failures.
    """
    try:
        return launcher.command("127.0.0.1", port, *args, timeout=timeout, password=password)
    except launcher.ReplyError as exc:
        raise BenchmarkFailed(f"server replied with an error: {exc}") from None
    except ConnectionResetError as exc:
        raise BenchmarkFailed(str(exc)) from None


# --------------------------------------------------------------------------- #
# Run records
# --------------------------------------------------------------------------- #


def _version_of(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git_revision() -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rev = _version_of(["git", "-C", root, "rev-parse", "HEAD"])
    if rev is None:
        return None
    dirty = _version_of(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"])
    return rev + ("-dirty" if dirty else "")


def machine_info() -> dict:
    """Facts about this machine and toolchain that a result depends on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = None
    try:
        import respkv
        respkv_version = getattr(respkv, "__version__", None)
    except ImportError:
        respkv_version = None
    return {
        "nproc": usable or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "loadavg_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "redis_server": _version_of(["redis-server", "--version"]),
        "redis_benchmark": _version_of([benchmark_binary(), "--version"]),
        "respkv": respkv_version,
        "git_revision": _git_revision(),
    }


def timestamp() -> str:
    """A local timestamp that sorts and is safe in file names."""
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def default_json_path(kind: str) -> str:
    """``bench-results/<kind>-<timestamp>.json``."""
    return os.path.join(RESULTS_DIR, f"{kind}-{timestamp()}.json")


def write_json(path: str, data: dict) -> None:
    """Write ``data`` to ``path``, creating its directory."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def format_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Render rows as a plain text table with right-aligned numbers."""
    text_rows = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text_rows) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            parts.append(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]))
        return "  ".join(parts).rstrip()

    lines = [render(text_rows[0]), render(["-" * w for w in widths])]
    lines.extend(render(r) for r in text_rows[1:])
    return "\n".join(lines)


def add_common_options(parser, kind: str) -> None:
    """Options every benchmark driver has: results file, extra server arguments,
    the reference-only mode (a second reference server in respkv's place, whose
    ratios show the machine's noise) and the per-run time limit."""
    parser.add_argument(
        "--json", metavar="PATH",
        help=f"where to write results (default: {RESULTS_DIR}/{kind}-<timestamp>.json)",
    )
    parser.add_argument(
        "--respkv-arg", action="append", default=[], metavar="ARG",
        help="extra argument for the respkv node(s) (repeatable)",
    )
    parser.add_argument(
        "--redis-arg", action="append", default=[], metavar="ARG",
        help="extra argument for redis-server (repeatable)",
    )
    parser.add_argument(
        "--reference-only", action="store_true",
        help="measure a second reference server in respkv's place (ratios should be ~1.0)",
    )
    parser.add_argument(
        "--run-timeout", type=float, default=600.0, metavar="SECONDS",
        help="give up on a single redis-benchmark run after this long (default: 600)",
    )
