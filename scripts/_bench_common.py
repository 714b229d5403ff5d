"""Helpers shared by the performance benchmarks (``scripts/bench_*.py``).

Every benchmark prints exactly one JSON document on stdout with ``--json`` (a table
otherwise) and logs to stderr. Ratios compare runs taken in the same process, interleaved,
so that drift in the machine's speed (other processes, thermal state) cancels out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def bench_parser(doc: str | None, quick_help: str = "a short run (under 3 minutes on 2 cores)") -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--json`` (one document on stdout) and ``--quick``."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p


def log(name: str, msg: str) -> None:
    print(f"[{name}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(seconds, result) of one call, wall clock."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def paired_ratios(treated: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """``treated[i] / baseline[i]`` for runs taken as pairs, one right after the other."""
    if len(treated) != len(baseline):
        raise ValueError(f"paired runs need equal counts, got {len(treated)} and {len(baseline)}")
    if not treated:
        raise ValueError("no paired runs")
    if any(b <= 0 for b in baseline):
        raise ValueError("baseline times must be positive")
    return [t / b for t, b in zip(treated, baseline)]


def median_paired_ratio(treated: Sequence[float], baseline: Sequence[float]) -> float:
    """Median over pairs of ``treated / baseline``: robust to one disturbed pair, and to drift."""
    return float(statistics.median(paired_ratios(treated, baseline)))


def interleaved_order(labels: Sequence[str], rounds: int) -> list[str]:
    """Run order for ``rounds`` rounds of every label, alternating which label goes first.

    ``["a", "b"]`` over 3 rounds gives ``a b b a a b``: a steady drift in machine speed
    penalises each label equally, and neither is always the one that runs on a warm cache.
    """
    order: list[str] = []
    for r in range(rounds):
        order.extend(labels if r % 2 == 0 else list(reversed(labels)))
    return order


def machine_info() -> dict[str, Any]:
    import numpy
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_1m_at_start"] = round(os.getloadavg()[0], 2)
    return info


def load_now() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary directory holding a fresh signing key pair (``key``/``pub``)."""
    from pol.keys import generate_keypair

    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        path = Path(d)
        generate_keypair(path / "bench")
        yield path


def key_paths(d: Path) -> tuple[Path, Path]:
    return d / "bench.key", d / "bench.pub"


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def emit(result: dict[str, Any], *, as_json: bool, table: str) -> None:
    """``--json``: the document on stdout; otherwise the human table on stdout."""
    if as_json:
        json.dump({"schema_version": SCHEMA_VERSION, **result}, sys.stdout, indent=2, default=_jsonable)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(table + "\n")
    sys.stdout.flush()


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def goal(value: float, limit: float, *, at_most: bool = True) -> str:
    ok = value <= limit if at_most else value >= limit
    return "met" if ok else "MISSED"
