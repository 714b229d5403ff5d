"""`pol zk ...` end to end on a real recorded proof, and every way the /zk section can fail."""

from __future__ import annotations

import json
import re
import secrets
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_runner import error_document, run_json, run_pol
from helpers_train import train_recorded
from zk_testutil import needs_arkworks, non_subgroup_point

from zk.errors import ZkFormatError
from zk.link import read_secrets, read_section, write_section
from zk.verify import verify_zk_section

CHUNK = 256


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Path:
    d = tmp_path_factory.mktemp("zk-run")
    train_recorded(d / "run.pol.h5", keys["key"], steps=12, every=4, seed=0)
    train_recorded(d / "other.pol.h5", keys["key"], steps=12, every=4, seed=1)
    return d


def _run(args: list) -> tuple[int, str, str]:
    """Run ``pol`` in-process without capsys (module-scoped fixtures cannot use it)."""
    import contextlib
    import io

    from pol.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def committed(run_dir: Path, keys: dict[str, Path]) -> Path:
    for name in ("run", "other"):
        code, out, err = _run(
            ["zk", "commit", run_dir / f"{name}.pol.h5", "--key", keys["key"], "--chunk-size", CHUNK, "--json"]
        )
        assert code == 0, err
        assert json.loads(out)["checkpoints"] == [0, 1, 2, 3]
    return run_dir / "run.pol.h5"


@pytest.fixture()
def copy(tmp_path: Path, committed: Path) -> Path:
    dst = tmp_path / "copy.pol.h5"
    shutil.copy(committed, dst)
    return dst


def failed(doc: dict) -> set[str]:
    return {c["name"] for c in doc["checks"] if not c["passed"]}


def test_honest_section_verifies(committed: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(["zk", "verify", committed, "--key", keys["pub"]], capsys)
    assert code == 0 and doc["verdict"] == "verified" and doc["schema_version"] == 1
    names = {c["name"] for c in doc["checks"]}
    assert names == {"zk.bound_to_run", "zk.signature", "zk.parameters", "zk.chain", "zk.merkle_roots", "zk.points",
                     "zk.binding", "zk.quantisation"}
    assert all(c["passed"] is True for c in doc["checks"])
    assert all(set(c) == {"name", "passed", "figure", "detail"} for c in doc["checks"])


def test_reference_backend_verifies_the_same_file(committed: Path, keys: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(["zk", "verify", committed, "--backend", "pyecc", "--key", keys["pub"]], capsys)
    assert code == 0, doc


def test_section_layout_and_secrets_stay_out_of_the_proof(committed: Path) -> None:
    section = read_section(committed)
    assert section.params.chunk_size == CHUNK and section.params.bits == 16 and section.params.scale_bits == 12
    assert all(name.startswith("model/") for name in section.layout.names)
    secrets_path = committed.with_name("run.zk-secrets.h5")
    assert secrets_path.stat().st_mode & 0o077 == 0
    sec = read_secrets(secrets_path)
    blob = committed.read_bytes()
    assert sec.checkpoints == section.checkpoints
    assert all(b.to_bytes(32, "big") not in blob for row in sec.blindings for b in row[:3])


def test_wrong_trusted_key_fails(committed: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(["zk", "verify", committed, "--key", keys["other_pub"]], capsys)
    assert code == 1 and failed(doc) == {"zk.signature"}


def test_edited_commitment_breaks_the_signature(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(copy, "a") as f:
        arr = f["zk/commitments"][()]
        arr[1, 0] = f["zk/commitments"][2, 0]  # a valid point, but not this checkpoint's
        f["zk/commitments"][...] = arr
    code, doc = run_json(["zk", "verify", copy], capsys)
    assert code == 1 and failed(doc) == {"zk.signature"}
    assert "zk_skipped" in doc  # no curve work for a section the verifier did not accept


def test_edited_merkle_root_fails(copy: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(copy, "a") as f:  # the roots are redundant and unsigned: the verifier recomputes them
        arr = f["zk/roots"][()]
        arr[2, 0] ^= 1
        f["zk/roots"][...] = arr
    code, doc = run_json(["zk", "verify", copy, "--key", keys["pub"]], capsys)
    assert code == 1 and failed(doc) == {"zk.merkle_roots"}


def _resign(path: Path, key: Path, mutate) -> None:
    from pol.keys import load_signing_key, sign
    from zk.link import SIGN_DOMAIN

    section = read_section(path)
    mutate(section)
    section.signature = sign(load_signing_key(key), SIGN_DOMAIN, section.digest())
    write_section(path, section, overwrite=True)


def test_point_outside_subgroup_fails_even_when_signed(
    copy: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    def mutate(s) -> None:
        com = s.commitments[0]
        s.commitments[0] = dataclasses.replace(com, chunks=(non_subgroup_point()[0], *com.chunks[1:]))

    _resign(copy, keys["key"], mutate)
    code, doc = run_json(["zk", "verify", copy], capsys)
    assert code == 1 and "zk.points" in failed(doc)


def test_forged_binding_proof_fails_even_when_signed(
    copy: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from zk.sigma import BindingProof

    def mutate(s) -> None:
        s.binding_proofs[1] = BindingProof(s.binding_proofs[1].t, (s.binding_proofs[1].z + 1) % (2**252))

    _resign(copy, keys["key"], mutate)
    code, doc = run_json(["zk", "verify", copy, "--key", keys["pub"]], capsys)
    assert code == 1 and failed(doc) == {"zk.binding"}


def test_section_moved_to_another_run_fails(committed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "other.pol.h5"
    shutil.copy(committed.with_name("other.pol.h5"), target)
    with h5py.File(target, "a") as dst, h5py.File(committed, "r") as src:
        del dst["zk"]
        src.copy("zk", dst)
    code, doc = run_json(["zk", "verify", target], capsys)
    assert code == 1 and "zk.bound_to_run" in failed(doc)


def test_ownership_proof_round_trip_and_forgeries(
    committed: Path, keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ch = secrets.token_hex(32)
    own = tmp_path / "own.zkp"
    sec = committed.with_name("run.zk-secrets.h5")
    code, _, err = run_pol(
        ["zk", "prove-ownership", committed, "--secrets", sec, "--checkpoint", 2, "--challenge", ch, "--out", own],
        capsys,
    )
    assert code == 0, err
    key = ["--key", keys["pub"]]
    code, doc = run_json(["zk", "verify", committed, "--ownership", own, "--challenge", ch, *key], capsys)
    assert code == 0 and [c["passed"] for c in doc["checks"] if c["name"] == "zk.ownership"] == [True]
    # replay against a different challenge
    code, doc = run_json(["zk", "verify", committed, "--ownership", own, "--challenge", secrets.token_hex(32), *key],
                         capsys)
    assert code == 1 and failed(doc) == {"zk.ownership"}
    # a flipped response byte
    data = bytearray(own.read_bytes())
    data[-5] ^= 0x01
    bad = tmp_path / "bad.zkp"
    bad.write_bytes(bytes(data))
    code, doc = run_json(["zk", "verify", committed, "--ownership", bad, "--challenge", ch, *key], capsys)
    assert code == 1 and failed(doc) == {"zk.ownership"}
    # the same proof presented for the other run
    other = committed.with_name("other.pol.h5")
    code, doc = run_json(["zk", "verify", other, "--ownership", own, "--challenge", ch, *key], capsys)
    assert code == 1 and "zk.ownership" in failed(doc)
    # truncated: malformed input, exit 2
    bad.write_bytes(own.read_bytes()[:100])
    code, _, err = run_pol(["zk", "verify", committed, "--ownership", bad, "--challenge", ch], capsys)
    assert code == 2 and "error" in err


def test_ownership_with_secrets_of_another_run_is_refused(
    committed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other_secrets = committed.with_name("other.zk-secrets.h5")
    code, _, err = run_pol(
        ["zk", "prove-ownership", committed, "--secrets", other_secrets, "--checkpoint", 1,
         "--challenge", secrets.token_hex(32), "--out", tmp_path / "x.zkp"],
        capsys,
    )
    assert code == 2 and "another run" in err


def test_chunk_openings(committed: Path, keys: dict[str, Path], tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    sec = committed.with_name("run.zk-secrets.h5")
    op = tmp_path / "open.json"
    code, _, err = run_pol(
        ["zk", "open", committed, "--secrets", sec, "--checkpoint", 1, "--chunk", 0, "--chunk", 18, "--out", op], capsys
    )
    assert code == 0, err
    code, doc = run_json(["zk", "verify", committed, "--opening", op, "--key", keys["pub"]], capsys)
    assert code == 0 and [c["passed"] for c in doc["checks"] if c["name"] == "zk.openings"] == [True]
    # the opened values are the checkpoint's quantised weights
    from pol.proof_file import ProofReader

    with ProofReader(committed) as r:
        state = r.checkpoint_state(1)
    first = sorted(k for k in state if k.startswith("model/"))[0]
    opened = json.loads(op.read_text())["chunks"][0]["values"]
    expect = np.rint(np.asarray(state[first], dtype=np.float64).ravel()[:5] * 4096).astype(int).tolist()
    assert opened[:5] == expect
    doc_json = json.loads(op.read_text())
    doc_json["chunks"][1]["values"][3] += 1
    op.write_text(json.dumps(doc_json))
    code, doc = run_json(["zk", "verify", committed, "--opening", op], capsys)
    assert code == 1 and failed(doc) == {"zk.openings"}
    # a well-formed opening that claims a checkpoint the section does not commit: a failed claim
    doc_json["checkpoint"] = 999
    op.write_text(json.dumps(doc_json))
    code, doc = run_json(["zk", "verify", committed, "--opening", op], capsys)
    assert code == 1 and failed(doc) == {"zk.openings"}
    (check,) = [c for c in doc["checks"] if c["name"] == "zk.openings"]
    assert "not committed" in check["detail"] and "checkpoint 999" in check["figure"]


@pytest.mark.parametrize(
    "breakage",
    ["no_zk", "bad_shape", "bad_version", "bad_layout", "bad_hex"],
)
def test_malformed_section_exits_2(copy: Path, breakage: str, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(copy, "a") as f:
        g = f["zk"]
        if breakage == "no_zk":
            del f["zk"]
        elif breakage == "bad_shape":
            data = g["roots"][()]
            del g["roots"]
            g.create_dataset("roots", data=data[:, :31])
        elif breakage == "bad_version":
            g.attrs["schema_version"] = 99
        elif breakage == "bad_layout":
            g.attrs["layout"] = "{not json"
        elif breakage == "bad_hex":
            g.attrs["signature"] = "zz"
    code, out, err = run_pol(["zk", "verify", copy, "--json"], capsys)
    assert code == 2 and error_document(out) and "Traceback" not in err


def _declare(g: h5py.Group, name: str, shape: tuple[int, ...], dtype: type = np.uint8) -> None:
    """Replace ``g[name]`` by a dataset that declares ``shape`` but stores nothing (a few KB on disk)."""
    del g[name]
    g.create_dataset(name, shape=shape, dtype=dtype, chunks=(1,) * (len(shape) - 1) + (min(shape[-1], 48),))


def _set_layout(g: h5py.Group, shapes: list[list[int]], length: int) -> None:
    g.attrs["layout"] = json.dumps({"names": [f"model/t{i}" for i in range(len(shapes))], "shapes": shapes})
    g.attrs["length"] = length


@pytest.mark.parametrize("breakage", ["too_many_commitments", "unwritten_commitments", "wrapping_layout"])
def test_section_that_declares_huge_arrays_exits_2(copy: Path, breakage: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from zk.section import MAX_TOTAL_CHUNKS

    with h5py.File(copy, "a") as f:
        g = f["zk"]
        n = len(g["checkpoints"])
        if breakage == "too_many_commitments":
            # 2^16 checkpoints x 2^22 chunks x 48 bytes = 12 TiB asked of a small file
            n_chunks = 1 << 22
            _set_layout(g, [[CHUNK, n_chunks]], CHUNK * n_chunks)
            del g["checkpoints"]
            g.create_dataset("checkpoints", data=np.arange(1 << 16, dtype=np.int64))
            _declare(g, "commitments", (1 << 16, n_chunks, 48))
            assert (1 << 16) * n_chunks > MAX_TOTAL_CHUNKS
            expect = "at most|budget"  # the zk cap, or before it the sandboxed reader's byte budget
        elif breakage == "unwritten_commitments":
            # within the caps, but 3 MiB of commitments that the file does not hold
            n_chunks = 1 << 14
            _set_layout(g, [[CHUNK * n_chunks]], CHUNK * n_chunks)
            _declare(g, "commitments", (n, n_chunks, 48))
            expect = ""
        else:
            # 2^32 * 2^32 wraps to 0 in int64, so the total would have matched length 1000
            _set_layout(g, [[1 << 32, 1 << 32], [1000]], 1000)
            expect = "layout"
    if breakage == "unwritten_commitments":
        # Through the sandboxed reader an unwritten region is a bounded copy of fill values (zeros): cheap,
        # and not a commitment to anything. It must not verify.
        code, out, err = run_pol(["zk", "verify", copy, "--json"], capsys)
        assert code in (1, 2) and "Traceback" not in err and "internal error" not in err, (code, out, err)
        return
    with pytest.raises(ZkFormatError, match=expect):
        read_section(copy)
    code, out, err = run_pol(["zk", "verify", copy, "--json"], capsys)
    assert code == 2 and error_document(out) and err.startswith("pol: error:") and err.count("\n") == 1, err
    assert re.search(expect, err)


def test_bad_cli_input_exits_2(committed: Path, keys: dict[str, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run_pol(["zk", "verify", committed, "--ownership", tmp_path / "nope.zkp", "--challenge", "00" * 32],
                         capsys)
    assert code == 2
    code, _, _ = run_pol(["zk", "verify", committed, "--ownership", committed, "--challenge", "xyz"], capsys)
    assert code == 2
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5_000)  # json.loads raises RecursionError, not ValueError
    code, _, err = run_pol(["zk", "verify", committed, "--opening", deep], capsys)
    assert code == 2 and "cannot read openings" in err and "internal error" not in err
    target = tmp_path / "c.pol.h5"
    shutil.copy(committed, target)
    code, _, err = run_pol(["zk", "commit", target, "--key", keys["other_key"], "--secrets-out", tmp_path / "s.h5",
                            "--force"], capsys)
    assert code == 2 and "signer" in err
    code, _, err = run_pol(["zk", "commit", target, "--key", keys["key"], "--secrets-out", tmp_path / "s.h5"], capsys)
    assert code == 2 and "already has a /zk" in err
    assert not (tmp_path / "s.h5").exists()  # no orphaned secrets for a section never written


def test_verify_zk_section_api(committed: Path, keys: dict[str, Path]) -> None:
    from pol.keys import load_verify_key

    result = verify_zk_section(str(committed), load_verify_key(keys["pub"]))
    assert result.verdict == "verified" and result.bound and result.exit_code == 0
    assert all(c["passed"] is True for c in result.checks)
    assert all(isinstance(c["figure"], str) and isinstance(c["detail"], str) for c in result.checks)
    bad = verify_zk_section(str(committed), load_verify_key(keys["other_pub"]))
    assert [c["name"] for c in bad.failed] == ["zk.signature"] and bad.verdict == "rejected"
    assert verify_zk_section(str(committed)).verdict == "self-asserted"


def test_every_form_of_trusted_key_is_checked(committed: Path, keys: dict[str, Path]) -> None:
    from pol.keys import TrustedKey, fingerprint, load_verify_key

    good, other = load_verify_key(keys["pub"]), load_verify_key(keys["other_pub"])
    forms = {
        "raw bytes": (bytes(good), bytes(other)),
        "key file": (TrustedKey(good, fingerprint(good), "k"), TrustedKey(other, fingerprint(other), "k")),
        "fingerprint only": (TrustedKey(None, fingerprint(good), "f"), TrustedKey(None, fingerprint(other), "f")),
    }
    for form, (trusted, untrusted) in forms.items():
        ok = verify_zk_section(str(committed), trusted).check("zk.signature")
        assert ok["passed"], form
        bad = verify_zk_section(str(committed), untrusted).check("zk.signature")
        assert not bad["passed"] and "not the trusted key" in bad["detail"], form


@needs_arkworks
def test_commit_is_backend_independent(run_dir: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    from pol.keys import load_signing_key
    from pol.proof_file import ProofReader
    from zk import Params, get_backend
    from zk.link import build_section

    sk = load_signing_key(keys["key"])
    with ProofReader(run_dir / "run.pol.h5") as r:
        fast, fs = build_section(r, sk, params=Params(chunk_size=CHUNK), backend=get_backend("arkworks"))
    with ProofReader(run_dir / "run.pol.h5") as r:
        # the same blindings through the reference backend give the same bytes
        from zk import Committer
        from zk.link import model_tensors

        c = Committer(Params(chunk_size=CHUNK), get_backend("pyecc"))
        _, com, _, _, _ = c.commit_tensors(model_tensors(r.checkpoint_state(fast.checkpoints[1])), fs.blindings[1])
    assert com.chunks == fast.commitments[1].chunks
