"""The benchmarks' shared harness: percentiles, tables, the CPU of a child, and rewriting
one section of docs/benchmarks.md without touching the rest."""

import math
import subprocess
import sys
from pathlib import Path

from common.testing.bench import Table, percentile, percentiles, process_cpu_seconds, write_section


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def test_a_section_is_added_once_then_replaced_in_place(tmp_path: Path) -> None:
    document = tmp_path / "benchmarks.md"
    document.write_text("# Benchmarks\n\nby hand\n")
    write_section(document, "billing", "first figures")
    write_section(document, "other", "other figures")
    write_section(document, "billing", "second figures")
    text = document.read_text()
    assert text.startswith("# Benchmarks\n\nby hand\n")
    assert "first figures" not in text
    assert text.count("second figures") == 1
    assert text.index("second figures") < text.index("other figures")


def test_a_table_prints_aligned_and_as_markdown() -> None:
    table = Table(["workers", "charges/s"])
    table.add(1, 612.345)
    table.add(2, 1234.5)
    assert table.text().splitlines() == [
        "workers  charges/s",
        "      1        612",
        "      2      1,234",
    ]
    assert "| 2 | 1,234 |" in table.markdown()


def test_the_cpu_of_a_running_child_is_read() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "sum(range(30_000_000)); input()"], stdin=subprocess.PIPE
    )
    try:
        # Busy for a moment, then waiting on stdin: its CPU time is above zero.
        for _ in range(100):
            if process_cpu_seconds(child.pid) > 0.05:
                break
            subprocess.run([sys.executable, "-c", "import time; time.sleep(0.05)"], check=True)
        assert process_cpu_seconds(child.pid) > 0.05
    finally:
        child.kill()
        child.wait()
    assert process_cpu_seconds(child.pid) == 0.0
