"""PNG plots for docs/BENCHMARKS.md (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless machines and CI have no display

import matplotlib.pyplot as plt  # noqa: E402

MIB = 1024 * 1024


def _save(figure: plt.Figure, path: Path) -> Path:
    """Grid every axis, lay out, write the PNG and free the figure (pyplot keeps it otherwise)."""
    for axis in figure.axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def latency_plot(latencies_s: Sequence[float], path: Path, *, rate: float) -> Path:
    """Histogram and CDF of close-to-commit latencies, with p50/p95/p99 marked."""
    if not latencies_s:
        raise ValueError("no latencies to plot")
    ordered = sorted(latencies_s)
    figure, (histogram, cdf) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    histogram.hist(ordered, bins=min(40, max(5, len(ordered) // 4)), color="#4c72b0", edgecolor="white")
    histogram.set_xlabel("close-to-commit latency (s)")
    histogram.set_ylabel("files")
    histogram.set_title(f"{len(ordered)} small files at {rate:g} files/s")
    fractions = [(index + 1) / len(ordered) for index in range(len(ordered))]
    cdf.step(ordered, fractions, where="post", color="#4c72b0")
    # Labels stacked at different heights: p95 and p99 often sit a hair apart.
    for q, colour, label_y in ((50, "#55a868", 0.5), (95, "#dd8452", 0.3), (99, "#c44e52", 0.15)):
        value = ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
        for axis in (histogram, cdf):
            axis.axvline(value, color=colour, linestyle="--", linewidth=1)
        cdf.annotate(f"p{q} {value:.3f} s", (value, label_y), xytext=(4, 0), textcoords="offset points",
                     color=colour, fontsize=9, ha="left")
    cdf.set_xlabel("close-to-commit latency (s)")
    cdf.set_ylabel("fraction of files committed")
    cdf.set_ylim(0, 1.02)
    cdf.set_title("cumulative distribution")
    return _save(figure, path)


def throughput_plot(samples: Sequence[Sequence[float]], path: Path, *, size: int, window_s: float = 1.0) -> Path:
    """MB/s over time of one large upload, from (seconds, bytes sent so far) samples ~0.2 s apart.

    The client counts a part's bytes when Box acknowledges it, so the rate is taken over a
    sliding `window_s` (several parts): shorter windows show part boundaries, not the link.
    The stretch after the last byte until the upload returns (the commit) is shaded.
    """
    if len(samples) < 2:
        raise ValueError(f"need at least 2 throughput samples, got {len(samples)}")
    times = [float(s[0]) for s in samples]
    sent = [float(s[1]) for s in samples]
    ends, rates = sliding_rates(times, sent, window_s)
    figure, (rate_axis, total_axis) = plt.subplots(2, 1, figsize=(10, 6), dpi=110, sharex=True)
    rate_axis.plot(ends, rates, color="#4c72b0", linewidth=1)
    average = sent[-1] / 1e6 / times[-1] if times[-1] else 0.0
    rate_axis.axhline(average, color="#dd8452", linestyle="--", linewidth=1,
                      label=f"average {average:.0f} MB/s, commit included")
    last_byte = times[sent.index(sent[-1])]
    if times[-1] > last_byte:
        for axis in (rate_axis, total_axis):
            axis.axvspan(last_byte, times[-1], color="#8c8c8c", alpha=0.15,
                         label="commit" if axis is rate_axis else None)
    rate_axis.set_ylabel(f"MB/s ({window_s:g} s sliding window)")
    size_label = f"{size / MIB / 1024:g} GiB" if size >= 1024 * MIB else f"{size / MIB:g} MiB"
    rate_axis.set_title(f"{size_label} chunked upload to the emulator, loopback, 4 parts in flight")
    rate_axis.legend(loc="lower left")
    total_axis.plot(times, [value / MIB for value in sent], color="#55a868")
    total_axis.set_xlabel("seconds since the upload started")
    total_axis.set_ylabel("MiB sent")
    return _save(figure, path)


def sliding_rates(times: Sequence[float], sent: Sequence[float], window_s: float) -> tuple[list[float], list[float]]:
    """(window end, MB/s over the window ending there) for each sample at least `window_s` in."""
    ends: list[float] = []
    rates: list[float] = []
    start = 0
    for index, now in enumerate(times):
        while start < index and now - times[start + 1] >= window_s:
            start += 1
        span = now - times[start]
        if index > start and span >= window_s * 0.99:
            ends.append(now)
            rates.append((sent[index] - sent[start]) / 1e6 / span)
    return ends, rates
