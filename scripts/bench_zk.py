#!/usr/bin/env python
"""Benchmark the zk package: commitments, binding and ownership proofs, generator loading.

    python scripts/bench_zk.py --json            # full run (first run derives 1M generators: ~4 min)
    python scripts/bench_zk.py --json --quick    # under 3 minutes; extrapolated figures say so

Prints a table, or with ``--json`` one JSON document, on stdout (progress on stderr). Figures:

* ``commit_1m_ref_s`` / ``commit_1m_fast_s``: Pedersen commitment to 1M uniformly random
  16-bit signed values (the worst case for digit-skipping; real weights are faster), 4096 per
  chunk, generators loaded and prepared beforehand (preparation reported separately).
* ``binding_1m_ref_s`` / ``binding_1m_fast_s``: verify that a commitment to 1M values opens to
  the values the verifier holds (``zk.binding``, once per checkpoint). ``binding_detail`` adds
  the prover's side (one scalar multiplication, ``prove_ms``), CPU time and proof size.
* ``*_cpu_s``: process CPU time of the same call (less sensitive to other load; arkworks may
  use more than one thread, so its CPU time can exceed wall time).
* ``load_1m_generators_s``: read 1M cached generators (+H) into backend points, with the
  body digest and spot checks (fast backend; ``..._ref_s`` for the reference backend).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from scripts._bench_common import bench_parser, emit, format_table, goal, timed  # noqa: E402
from scripts._bench_common import log as _log  # noqa: E402
from zk import Committer, Context, GeneratorSet, Params, get_backend  # noqa: E402
from zk.backend import available_backends  # noqa: E402
from zk.generators import DEFAULT_DST, cache_path, write_cache_file  # noqa: E402
from zk.sigma import prove_binding, prove_opening, verify_binding, verify_opening  # noqa: E402

ONE_M = 1 << 20


def log(msg: str) -> None:
    _log("bench_zk", msg)


def bench_commit(backend_name: str, n_values: int) -> dict[str, float]:
    be = get_backend(backend_name)
    c = Committer(Params(), be)
    t_load, gens = timed(lambda: c.generators)
    t_prep, _ = timed(lambda: gens.prepared)
    vals = np.random.default_rng(0).integers(-(2**15), 2**15, n_values)
    cpu0 = time.process_time()
    t_commit, (com, _) = timed(c.commit_values, vals)
    cpu = time.process_time() - cpu0
    return {"load_4096_s": t_load, "prepare_s": t_prep, "commit_s": t_commit, "cpu_s": cpu, "chunks": len(com.chunks)}


def bench_binding(n_values: int) -> dict[str, dict[str, float]]:
    """Verify one binding proof with every backend (the commitment is made once, with the fastest:
    both backends write the same bytes)."""
    c = Committer(Params(), get_backend())
    vals = np.random.default_rng(1).integers(-(2**15), 2**15, n_values)
    com, bl = c.commit_values(vals)
    ctx = Context(b"\x01" * 32, 1, b"\x03" * 32)
    out = {}
    for name in available_backends():
        cb = Committer(Params(), get_backend(name))
        cb.generators  # loaded from the cache beforehand, not timed
        tp, proof = timed(prove_binding, cb, ctx, com, bl)
        cpu0 = time.process_time()
        tv, _ = timed(verify_binding, cb, ctx, com, vals, proof)
        out[name] = {"prove_ms": 1e3 * tp, "verify_s": tv, "verify_cpu_s": time.process_time() - cpu0,
                     "proof_bytes": len(proof.to_bytes())}
    return out


def bench_ownership(backend_name: str, n_values: int) -> dict[str, float]:
    be = get_backend(backend_name)
    c = Committer(Params(), be)
    vals = np.random.default_rng(2).integers(-(2**15), 2**15, n_values)
    com, bl = c.commit_values(vals)
    ctx = Context(b"\x02" * 32, 1)
    tp, proof = timed(prove_opening, c, ctx, com, vals, bl, challenge=b"bench")
    tv, _ = timed(verify_opening, c, ctx, com, proof, challenge=b"bench")
    return {"prove_s": tp, "verify_s": tv, "proof_bytes": len(proof.to_bytes())}


def ensure_generators(size: int) -> float | None:
    """Derive and cache ``size`` generators with the fastest backend; return seconds or None if cached."""
    if cache_path(size).exists():
        return None
    be = get_backend()
    log(f"deriving {size} generators with {be.name} (one-time, cached)")
    t, gs = timed(GeneratorSet.derive, size, DEFAULT_DST, be)
    write_cache_file(gs, cache_path(size))
    return t


def bench_load(size: int) -> dict[str, float]:
    out = {}
    for name in available_backends():
        be = get_backend(name)
        t, gs = timed(GeneratorSet.load, size, DEFAULT_DST, be, None, write_cache=False)
        assert len(gs.g) == size
        out[name] = t
        del gs
    return out


def main() -> int:
    args = bench_parser(__doc__, "finish under 3 minutes; extrapolate where stated").parse_args()
    fast = "arkworks" in available_backends()
    doc: dict[str, Any] = {
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        # Other work on the machine inflates wall-clock figures: the load average says how much.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "backends": available_backends(),
        "params": {"chunk_size": 4096, "bits": 16, "scale_bits": 12, "values": "uniform random 16-bit signed"},
        "extrapolated": {},
    }

    # generators for chunk size 4096 (shared by every commitment figure)
    ensure_generators(4096)

    ref_n = (1 << 17) if args.quick else ONE_M
    log(f"reference commit of {ref_n} values")
    ref = bench_commit("pyecc", ref_n)
    doc["commit_1m_ref_s"] = round(ref["commit_s"] * ONE_M / ref_n, 3)
    doc["commit_1m_ref_cpu_s"] = round(ref["cpu_s"] * ONE_M / ref_n, 3)
    doc["ref_prepare_s"] = round(ref["prepare_s"], 3)
    if ref_n != ONE_M:
        doc["extrapolated"]["commit_1m_ref_s"] = f"measured on {ref_n} values, scaled x{ONE_M // ref_n} (linear)"
    if fast:
        log("fast commit of 1M values")
        fr = bench_commit("arkworks", ONE_M)
        doc["commit_1m_fast_s"] = round(fr["commit_s"], 3)
        doc["commit_1m_fast_cpu_s"] = round(fr["cpu_s"], 3)
        doc["fast_prepare_s"] = round(fr["prepare_s"], 3)
    else:
        doc["commit_1m_fast_s"] = None

    log("binding proofs (a commitment to 1M values opens to the verifier's own values)")
    binding = bench_binding(ONE_M)
    doc["binding_1m_ref_s"] = round(binding["pyecc"]["verify_s"], 3)
    doc["binding_1m_fast_s"] = round(binding["arkworks"]["verify_s"], 3) if fast else None
    doc["binding_detail"] = {name: {k: round(v, 4) for k, v in d.items()} for name, d in binding.items()}

    log("ownership proof (knowledge of opening, batched over chunks)")
    own_n = (1 << 16) if args.quick else ONE_M
    if fast:
        doc["ownership_fast"] = {**bench_ownership("arkworks", ONE_M), "values": ONE_M}
    doc["ownership_ref"] = {**bench_ownership("pyecc", own_n), "values": own_n}

    load_n = ONE_M
    if args.quick and not cache_path(ONE_M).exists():
        load_n = 1 << 17
        doc["extrapolated"]["load_1m_generators_s"] = (
            f"no 1M cache yet: measured loading {load_n} generators, scaled x{ONE_M // load_n} (linear)"
        )
    gen_t = ensure_generators(load_n)
    if gen_t is not None:
        doc["derive_generators_s"] = {"count": load_n, "seconds": round(gen_t, 2), "backend": get_backend().name}
    log(f"loading {load_n} cached generators")
    loads = bench_load(load_n)
    scale = ONE_M / load_n
    doc["load_1m_generators_s"] = round(loads[get_backend().name] * scale, 3)
    doc["load_1m_generators_ref_s"] = round(loads["pyecc"] * scale, 3)
    doc["goals"] = {
        "commit_1m_ref_s": 12,
        "commit_1m_fast_s": 3,
        "binding_1m_ref_s": 4,
        "binding_1m_fast_s": 1,
        "load_1m_generators_s": 1,
    }
    doc["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = [[name, doc.get(name), limit, "n/a" if doc.get(name) is None else goal(doc[name], limit)]
            for name, limit in doc["goals"].items()]
    emit(doc, as_json=args.json, table=format_table(rows, ["figure", "measured", "goal (at most)", "status"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
