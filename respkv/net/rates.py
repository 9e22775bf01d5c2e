"""Instantaneous rates, as Redis reports them in ``INFO stats``.

Redis samples a counter every 100 ms and reports the mean of the last 16
samples (``instantaneous_ops_per_sec``, ``instantaneous_input_kbps``,
``instantaneous_output_kbps``): a figure that follows the load within a couple of
seconds without jumping with every burst.  :class:`InstantaneousRate` does the
same from whatever cadence the node's cron samples it at; the rate of each sample
is the counter's growth over the time since the previous sample, so a slower
``hz`` gives longer samples, not a wrong figure.

The same sampling turns Linux's CPU pressure stall counter (the microseconds
during which at least one runnable task waited for a CPU, ``some ... total=``)
into a per cent of wall time: :attr:`InstantaneousMetrics.cpu_pressure`, which
background work (anti-entropy, hand-off) yields to.  The node's own cgroup's
figure is read where the cgroup file system shows it (``cpu.pressure`` in a
container), the machine's otherwise (``/proc/pressure/cpu``).
"""

from __future__ import annotations

from collections import deque

#: Samples averaged (Redis's STATS_METRIC_SAMPLES).
SAMPLES = 16


class InstantaneousRate:
    """The recent growth per second of one ever-growing counter."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        self._last_time: float | None = None
        self._last_total = 0

    def sample(self, now: float, total: int) -> None:
        """Record that the counter was ``total`` at ``now`` (seconds, monotonic).

        A counter that went down (``CONFIG RESETSTAT``) restarts the series."""
        last_time = self._last_time
        if last_time is not None and now > last_time:
            if total < self._last_total:
                self._samples.clear()
            else:
                self._samples.append((total - self._last_total) / (now - last_time))
        if last_time is None or now > last_time:
            self._last_time = now
            self._last_total = total

    def per_second(self) -> float:
        """The mean of the recent samples; 0 before the first one."""
        samples = self._samples
        return sum(samples) / len(samples) if samples else 0.0

    def recent_peak(self) -> float:
        """The highest of the recent samples: it rises with the first busy sample
        and falls only when the whole window was quieter (what background work
        that must yield to clients should go by: it yields at once and resumes
        slowly); 0 before the first sample."""
        return max(self._samples, default=0.0)


#: Where the CPU pressure stall counter is read from, first found first.
PRESSURE_FILES = ("/sys/fs/cgroup/cpu.pressure", "/proc/pressure/cpu")


def stall_microseconds(text: str) -> int | None:
    """The ``some`` line's ``total=`` of a pressure file's ``text`` (microseconds
    during which at least one task waited); None if it has none."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "some":
            for field in fields[1:]:
                name, _, value = field.partition("=")
                if name == "total" and value.isdigit():
                    return int(value)
    return None


class CpuPressure:
    """The recent CPU pressure, in per cent of wall time, sampled from the first
    readable of ``files``; 0 where none is (pressure then never slows anything)."""

    def __init__(self, files: tuple[str, ...] = PRESSURE_FILES) -> None:
        self._files = files
        self._path: str | None = None
        self.available = True
        self.rate = InstantaneousRate()

    def _read(self) -> int | None:
        for path in ((self._path,) if self._path else self._files):
            try:
                with open(path) as f:
                    total = stall_microseconds(f.read())
            except OSError:
                continue
            if total is not None:
                self._path = path
                return total
        return None

    def sample(self, now: float) -> None:
        if not self.available:
            return
        total = self._read()
        if total is None:
            self.available = False
            return
        self.rate.sample(now, total)

    def recent_peak(self) -> float:
        """The highest recent sample, per cent (see :meth:`InstantaneousRate.recent_peak`)."""
        return self.rate.recent_peak() / 10_000  # µs per second → per cent


class InstantaneousMetrics:
    """The node's instantaneous figures: commands, input and output bytes.

    :meth:`sample` reads the node's ``Stats`` (``commands_processed``,
    ``net_input_bytes``, ``net_output_bytes``); the cron calls it every tick."""

    def __init__(self) -> None:
        self.ops = InstantaneousRate()
        self.input_bytes = InstantaneousRate()
        self.output_bytes = InstantaneousRate()
        #: The machine's (or cgroup's) CPU pressure, per cent.
        self.cpu_pressure = CpuPressure()

    def sample(self, now: float, stats) -> None:
        self.cpu_pressure.sample(now)
        self.ops.sample(now, stats.commands_processed)
        self.input_bytes.sample(now, stats.net_input_bytes)
        self.output_bytes.sample(now, stats.net_output_bytes)

    def info_fields(self) -> list[tuple[str, object]]:
        """``INFO stats``' ``instantaneous_*`` fields, as Redis formats them."""
        return [
            ("instantaneous_ops_per_sec", round(self.ops.per_second())),
            ("instantaneous_input_kbps", f"{self.input_bytes.per_second() / 1024:.2f}"),
            ("instantaneous_output_kbps", f"{self.output_bytes.per_second() / 1024:.2f}"),
        ]
