"""A corpus of malformed proof files: every one must give exit 2 and a one-line error."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import zstandard
from cli_runner import run_pol


def _replace(f: h5py.File, path: str, data: np.ndarray) -> None:
    del f[path]
    f.create_dataset(path, data=data)


MUTATIONS: dict[str, Callable[[h5py.File], None]] = {
    "no format marker": lambda f: f.attrs.__delitem__("format"),
    "future format version": lambda f: f.attrs.__setitem__("format_version", 99),
    "unknown codec": lambda f: f.attrs.__setitem__("codec", "lzma-magic"),
    "plan missing": lambda f: f.__delitem__("plan"),
    "plan not JSON": lambda f: _replace(f, "plan", np.frombuffer(b"{not json", np.uint8)),
    "plan wrong type": lambda f: _replace(f, "plan", np.arange(5, dtype=np.float64)),
    "plan fields missing": lambda f: _replace(f, "plan", np.frombuffer(b'{"version": 1, "seed": 0}', np.uint8)),
    "signer key short": lambda f: _replace(f, "signer_public_key", np.zeros(31, np.uint8)),
    "plan signature missing": lambda f: f.__delitem__("signatures/plan"),
    "chain digests wrong width": lambda f: _replace(f, "chain/digests", np.zeros((5, 31), np.uint8)),
    "chain lengths differ": lambda f: _replace(f, "chain/steps", np.zeros(3, np.int64)),
    "indices wrong batch": lambda f: _replace(f, "indices", np.zeros((40, 7), np.int64)),
    "indices float": lambda f: _replace(f, "indices", np.zeros((40, 32), np.float32)),
    "final head not hex": lambda f: f["final"].attrs.__setitem__("chain_head", "zz"),
    "checkpoint index not JSON": lambda f: _replace(f, "checkpoints/000002/index", np.frombuffer(b"[", np.uint8)),
    "checkpoint deltas corrupt": lambda f: _replace(f, "checkpoints/000002/deltas", np.frombuffer(b"\x28\xb5\x2f\xfd garbage", np.uint8)),
    "checkpoint plain missing": lambda f: f.__delitem__("checkpoints/000000/plain"),
    "checkpoint index lies about sizes": lambda f: _replace(
        f, "checkpoints/000001/index", np.frombuffer(_zstd_edit(f["checkpoints/000001/index"][()], b'"shape": [64',
                                                                b'"shape": [6400000'), np.uint8)),
}


def _zstd_edit(blob: np.ndarray, old: bytes, new: bytes) -> bytes:
    """Re-compress a zstd-coded index with one edit (a well-formed stream that lies)."""
    text = zstandard.ZstdDecompressor().decompress(blob.tobytes())
    assert old in text
    return zstandard.ZstdCompressor().compress(text.replace(old, new))


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_malformed_proof_exits_2_with_one_line(name: str, honest_proof: Path, keys: dict, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pol.h5"
    shutil.copy(honest_proof, bad)
    with h5py.File(bad, "r+") as f:
        MUTATIONS[name](f)
    code, out, err = run_pol(["verify", bad, "--key", keys["pub"], "--segments", "4", "--seed", "0", "--json"], capsys)
    assert code == 2, f"{name}: exit {code}\n{out[:500]}"
    assert out == "" and err.startswith("pol: error:") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err
