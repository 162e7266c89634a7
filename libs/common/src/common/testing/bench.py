"""A small harness the benchmarks share: timing, percentiles, the CPU time of child
processes, a printed table, and writing a benchmark's section of docs/benchmarks.md.

A benchmark is a script under scripts/ that starts what it measures with the test plumbing
(common.testing.servers, temporary_database, the simulators' servers), measures with this
module, prints its table, and, asked to, rewrites its own section of docs/benchmarks.md
between two markers, leaving the rest of the page as it is.
"""

import math
import os
import platform
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Span:
    """Wall-clock seconds of a measured block, and the CPU seconds this process used."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def timed() -> Iterator[Span]:
    """with timed() as span: ...; then span.wall, span.cpu."""
    span = Span()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield span
    finally:
        span.wall = time.perf_counter() - wall
        span.cpu = time.process_time() - cpu


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process (and its waited-for children) used,
    from /proc; 0.0 when the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    # After the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICKS


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest rank); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def percentiles(values: Sequence[float], pcts: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    return {f"p{pct:g}": percentile(values, pct) for pct in pcts}


@dataclass
class Table:
    """Rows of figures, printed as a fixed-width table or written as Markdown."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([_cell(cell) for cell in cells])

    def text(self) -> str:
        widths = [
            max(len(self.headers[i]), *(len(row[i]) for row in self.rows)) if self.rows else len(h)
            for i, h in enumerate(self.headers)
        ]
        lines = ["  ".join(h.rjust(w) for h, w in zip(self.headers, widths, strict=True))]
        lines += [
            "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in self.rows
        ]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.headers) + " |"]
        lines.append("|" + "|".join("---:" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> str:
    """One line about where the figures were taken."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load:.1f} at the start"
    )


def write_section(document: Path, name: str, body: str) -> None:
    """Put body between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in the document,
    appending both markers at the end the first time; the rest is left as it is."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = document.read_text() if document.exists() else ""
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        before = text.split(start, 1)[0]
        after = text.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    document.write_text(text)
