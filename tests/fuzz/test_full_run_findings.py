"""Regressions for what the first full fuzz run found (docs/SECURITY.md, Malformed input).

Each test fails without its fix: the reader, layout or verifier change, or the harness generator
that could not build (or built a no-op of) its case.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from cli_runner import run_pol

from pol.errors import ProofFormatError, WeightsFileError
from pol.proof_file import ProofReader
from pol.weights_io import check_safetensors_header, load_weights

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 64  # values per /zk chunk: keeps the pure-Python backend fast


# -- safetensors headers (findings 1 and 2) -----------------------------------------------------
def _st_file(path: Path, header: dict[str, Any] | bytes, body: bytes) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


def _entry(start: int, stop: int) -> dict[str, Any]:
    return {"dtype": "U8", "shape": [stop - start], "data_offsets": [start, stop]}


def test_deeply_nested_safetensors_header_is_a_weights_file_error(tmp_path: Path) -> None:
    # Found: `pol verify/digest w.safetensors` -> "internal error: RecursionError ... decoding a JSON array".
    p = _st_file(tmp_path / "w.safetensors", b"[" * 200_000 + b"]" * 200_000, b"")
    with pytest.raises(WeightsFileError, match="nested too deeply"):
        check_safetensors_header(p)


def test_duplicate_tensor_name_in_a_safetensors_header_is_refused(tmp_path: Path) -> None:
    # Found: a header naming a tensor twice was read (the last entry won) and verified, exit 0.
    raw = b'{"a": ' + json.dumps(_entry(0, 4)).encode() + b', "a": ' + json.dumps(_entry(4, 8)).encode() + b"}"
    p = _st_file(tmp_path / "w.safetensors", raw, bytes(8))
    with pytest.raises(WeightsFileError, match="duplicate keys"):
        check_safetensors_header(p)


@pytest.mark.parametrize("spans", [
    {"a": (0, 8), "b": (4, 12)},                       # adjacent in start order
    {"a": (0, 12), "e": (2, 2), "b": (4, 6)},          # an empty tensor between them hid it (pairwise check)
])
def test_overlapping_tensor_ranges_are_refused(tmp_path: Path, spans: dict[str, tuple[int, int]]) -> None:
    p = _st_file(tmp_path / "w.safetensors", {k: _entry(*v) for k, v in spans.items()}, bytes(12))
    with pytest.raises(WeightsFileError, match="tensors overlap"):
        check_safetensors_header(p)
    with pytest.raises(WeightsFileError):
        load_weights(p)


def test_fuzz_overlap_case_really_overlaps() -> None:
    # Found: the harness's "overlap" edit gave the first tensor's offsets to tensors of its shape;
    # the corpus model has no second one, so the file stayed honest and verified (exit 0).
    sys.path.insert(0, str(ROOT))
    from scripts.fuzz.inputs import _overlap

    header = {"__metadata__": {}, "fc1.bias": _entry(0, 256), "fc1.weight": _entry(256, 16640),
              "fc2.bias": _entry(16640, 16680), "fc2.weight": _entry(16680, 19240)}
    _overlap(header)
    spans = sorted(tuple(e["data_offsets"]) for k, e in header.items() if k != "__metadata__")
    assert any(b0 < a1 for (a0, a1), (b0, b1) in zip(spans, spans[1:]))


# -- /zk (findings 3, 4 and 5) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def zk_proof(tmp_path_factory: pytest.TempPathFactory, honest_proof: Path, keys: dict[str, Path]) -> Path:
    """A copy of the honest proof with a /zk section (`pol zk commit`, 64-value chunks)."""
    import os

    from pol.cli import main

    d = tmp_path_factory.mktemp("zk-findings")
    path = d / "zk.pol.h5"
    shutil.copy(honest_proof, path)
    old = os.environ.get("POL_ZK_CACHE")
    os.environ["POL_ZK_CACHE"] = str(d / "cache")  # never the user's ~/.cache
    try:
        main(["zk", "commit", str(path), "--key", str(keys["key"]), "--chunk-size", str(CHUNK)])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    finally:
        if old is None:
            os.environ.pop("POL_ZK_CACHE", None)
        else:
            os.environ["POL_ZK_CACHE"] = old
    return path


def _retyped(src: Path, dst: Path, name: str, dtype: str) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        values = f["zk"][name][()]
        del f["zk"][name]
        f["zk"].create_dataset(name, data=values.astype(dtype))
    return dst


@pytest.mark.parametrize("name, dtype", [("checkpoints", "int8"), ("clipped", "int8"), ("clipped", "uint64"),
                                         ("roots", "uint16")])
def test_zk_datasets_must_have_their_documented_dtype(zk_proof: Path, tmp_path: Path, name: str, dtype: str) -> None:
    # Found: /zk/checkpoints and /zk/clipped stored as int8 (the same numbers) verified, exit 0.
    from zk.errors import ZkFormatError
    from zk.section import read_section

    assert read_section(zk_proof).checkpoints  # the honest section reads
    bad = _retyped(zk_proof, tmp_path / "bad.pol.h5", name, dtype)
    with pytest.raises(ZkFormatError, match=f"/zk/{name}"):
        read_section(bad)
    with pytest.raises(ProofFormatError, match=f"/zk/{name}"):  # and wherever the proof is opened
        ProofReader(bad).close()


class _NaNCheckpoints:
    """A reader whose stored checkpoints hold NaN (as a bit flip in a float can make them)."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def checkpoint_state(self, i: int) -> dict[str, np.ndarray]:
        state = dict(self._reader.checkpoint_state(i))
        for k, v in state.items():
            if k.startswith("model/") and np.asarray(v).dtype.kind == "f":
                state[k] = np.full_like(v, np.nan)
        return state


def test_zk_verify_of_nan_checkpoints_is_a_failed_check(zk_proof: Path, keys: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Found: a flipped bit in a checkpoint -> "internal error: ValueError: cannot quantise NaN".
    from pol.keys import load_verify_key
    from zk.verify import verify_zk_section

    monkeypatch.setenv("POL_ZK_CACHE", str(tmp_path / "cache"))
    with ProofReader(zk_proof) as r:
        result = verify_zk_section(_NaNCheckpoints(r), load_verify_key(keys["pub"]), chain=False)
    failed = {c["name"]: c["detail"] for c in result.checks if c["passed"] is False}
    assert "zk.binding" in failed and "no quantisation" in failed["zk.binding"]


@pytest.mark.parametrize("base", ["honest", "zk"])
def test_proof_whose_zk_holds_unknown_members_is_refused_by_every_reader(
        base: str, honest_proof: Path, zk_proof: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Found: `pol export` of a proof with 30,000 unknown groups under /zk wrote its weights, exit 0:
    # /zk was an open extension point only `pol zk verify` checked.
    path = tmp_path / "in.pol.h5"
    shutil.copy(zk_proof if base == "zk" else honest_proof, path)
    ProofReader(path).close()  # reads before the edit
    with h5py.File(path, "r+") as f:
        g = f.require_group("zk")
        for i in range(3):
            g.create_group(f"m{i}")
    with pytest.raises(ProofFormatError, match="unexpected entry '/zk/m0'" if base == "zk" else "/zk lacks"):
        ProofReader(path).close()
    code, out, err = run_pol(["export", path, "--out", tmp_path / "out.safetensors"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "out.safetensors").exists()


# -- responses (found once the harness built its flood case) --------------------------------------
def test_response_holding_states_the_challenge_does_not_ask_for_is_refused(
        keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Found: a response with 30,000 extra (empty) /states groups verified, exit 0.
    from helpers_train import train_recorded

    proof = train_recorded(tmp_path / "c.pol.h5", keys["key"], steps=20, every=5, anchor=2)
    ch, resp = tmp_path / "ch.json", tmp_path / "resp.h5"
    assert run_pol(["challenge", proof, "--out", ch, "--segments", "2", "--seed", "7"], capsys)[0] == 0
    assert run_pol(["respond", proof, "--challenge", ch, "--out", resp], capsys)[0] == 0
    verify = ["verify", proof, "--key", keys["pub"], "--response", resp, "--challenge", ch]
    assert run_pol(verify, capsys)[0] == 0  # the honest response
    with h5py.File(resp, "r+") as f:
        unasked = [i for i in range(100) if f"{i:06d}" not in f["states"]][:3]
        for i in unasked:
            f["states"].create_group(f"{i:06d}")
    code, out, err = run_pol(verify, capsys)
    assert code == 2 and err.strip().splitlines() == [
        f"pol: error: the response holds checkpoint state(s) {unasked} the challenge does not ask for (refused)"]


# -- the harness (findings 6 and 7) -------------------------------------------------------------
def test_harness_builds_the_alias_and_flood_cases(honest_proof: Path, tmp_path: Path) -> None:
    # Found: four cases never ran (build_errors): a hard alias of a dataset to itself
    # (signer_public_key, chain/digests), and floods of names (000000, ...) the file already held.
    sys.path.insert(0, str(ROOT))
    from scripts.fuzz import h5edit as E
    from scripts.fuzz.proofs import structural_cases

    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_group("checkpoints/000000")
        f.create_group("checkpoints/000001")
        E.flood_groups(5, "{:06d}")(f, "checkpoints", tmp_path)
        assert sorted(f["checkpoints"]) == [f"{i:06d}" for i in range(5)]

    class _Corpus:  # what structural_cases reads; the honest proof stands in for all three
        full = raw = compact = honest_proof
        pub = forger_pub = tmp_path / "k.pub"

        def verify_args(self, *a: Any) -> list[str]:
            return ["verify"]

    import random

    aliases = [c for c in structural_cases(_Corpus(), random.Random(0))  # type: ignore[arg-type]
               if c.name in ("signer_public_key:hard-alias", "chain/digests:hard-alias")]
    assert len(aliases) == 2
    for i, case in enumerate(aliases):
        case_dir = tmp_path / f"case{i}"
        case_dir.mkdir()
        case.build(case_dir)  # raised KeyError before: the alias named the dataset just deleted
        with h5py.File(case_dir / case.target, "r") as f:
            name = case.name.split(":")[0]
            other = {"signer_public_key": "plan", "chain/digests": "chain/state_digests"}[name]
            assert f[name] == f[other]  # one object under two names: a hard alias


def test_harness_reads_a_long_json_document_whole(tmp_path: Path) -> None:
    # Found: `pol inspect --json` of a proof whose signed plan holds a 2M-entry LR table printed a
    # 12 MB document; the harness read its first 1 MiB and counted bad_json.
    import resource
    import time

    sys.path.insert(0, str(ROOT))
    from scripts.fuzz.runner import ANY, Case, Runner
    from scripts.fuzz_inputs import judge

    doc = {"lr_schedule": {"kind": "table", "values": [0.05] * 500_000}}
    (tmp_path / ".stdout").write_text(json.dumps(doc))
    (tmp_path / ".stderr").write_text("")
    assert (tmp_path / ".stdout").stat().st_size > 1 << 21
    runner = Runner(jobs=1, timeout=10, memory_mb=1024, mode="fork", env={})
    case = Case("proof", "forged", "long-json", ["inspect", "in.pol.h5", "--json"], ANY, json_stdout=True)
    outcome = runner._outcome(case, 0, tmp_path, time.monotonic(), 0, resource.getrusage(resource.RUSAGE_SELF),
                              timed_out=False)
    assert json.loads(outcome.stdout) == doc and judge(outcome)[0] == []
