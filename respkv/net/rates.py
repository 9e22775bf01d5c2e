"""Instantaneous rates, as Redis reports them in ``INFO stats``.

Redis samples a counter every 100 ms and reports the mean of the last 16
samples (``instantaneous_ops_per_sec``, ``instantaneous_input_kbps``,
``instantaneous_output_kbps``): a figure that follows the load within a couple of
seconds without jumping with every burst.  :class:`InstantaneousRate` does the
same from whatever cadence the node's cron samples it at; the rate of each sample
is the counter's growth over the time since the previous sample, so a slower
``hz`` gives longer samples, not a wrong figure.
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


class InstantaneousMetrics:
    """The node's instantaneous figures: commands, input and output bytes.

    :meth:`sample` reads the node's ``Stats`` (``commands_processed``,
    ``net_input_bytes``, ``net_output_bytes``); the cron calls it every tick."""

    def __init__(self) -> None:
        self.ops = InstantaneousRate()
        self.input_bytes = InstantaneousRate()
        self.output_bytes = InstantaneousRate()

    def sample(self, now: float, stats) -> None:
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
