"""``pol tee``: the command line as a user runs it (exit 0 accepted, 1 rejected, 2 malformed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pol.cli import main
from tee_sim.cli import group

POL = Path(sys.executable).parent / "pol"


def _invoke(*args: str) -> tuple[int, str, str]:
    """Run through the real entry point (``pol.cli.main``) in-process; returns (code, out, err)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as info:
        main(["tee", *args])
    code = info.value.code
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    runner = CliRunner()
    result = runner.invoke(group, ["init", "--state", str(tmp_path / "state")])
    assert result.exit_code == 0, result.output
    (tmp_path / "input.txt").write_bytes(b"0,1\n1,3\n2,5\n")
    return tmp_path / "state"


def _attest(state: Path, *extra: str) -> tuple[str, Path]:
    runner = CliRunner()
    nonce = runner.invoke(group, ["nonce", "--state", str(state)]).output.strip()
    out = state.parent / f"ev-{nonce[:8]}"
    result = runner.invoke(group, ["attest", str(state.parent / "input.txt"), "--nonce", nonce, "--out", str(out),
                                   "--state", str(state), *extra])
    assert result.exit_code == 0, result.output
    return nonce, out


def _verify_json(state: Path, quote: Path, *extra: str, data: Path | None = None) -> tuple[int, dict]:
    code, out, _ = _invoke("verify", str(quote), "--policy", str(state / "policy.json"), "--state", str(state),
                           "--input", str(data or state.parent / "input.txt"), "--json", *extra)
    return code, json.loads(out)


def test_tee_cli_attest_then_verify_accepts(state: Path) -> None:
    nonce, ev = _attest(state)
    assert {p.name for p in ev.iterdir()} == {"quote.bin", "output.bin", "evidence.json"}
    code, doc = _verify_json(state, ev / "quote.bin", "--nonce", nonce)
    assert code == 0
    assert doc["schema_version"] == 1 and doc["verdict"] == "accepted (simulated)" and doc["simulated"] is True
    assert doc["tcb_status"] == "UpToDate" and doc["reasons"] == []
    assert all(set(c) >= {"name", "passed", "figure", "detail"} and c["passed"] for c in doc["checks"])
    assert json.loads((ev / "output.bin").read_bytes())["length"] == 12


def test_tee_cli_replayed_nonce_is_caught_across_processes(state: Path) -> None:
    nonce, ev = _attest(state)
    cmd = [str(POL), "tee", "verify", str(ev / "quote.bin"), "--policy", str(state / "policy.json"),
           "--state", str(state), "--nonce", nonce, "--input", str(state.parent / "input.txt"), "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 1, second.stderr
    assert json.loads(second.stdout)["reasons"] == ["nonce_replayed"]


def test_tee_cli_malformed_quote_exits_2(state: Path) -> None:
    nonce, ev = _attest(state)
    (ev / "quote.bin").write_bytes((ev / "quote.bin").read_bytes()[:-3])
    code, out, err = _invoke("verify", str(ev / "quote.bin"), "--policy", str(state / "policy.json"),
                             "--state", str(state), "--nonce", nonce, "--input", str(state.parent / "input.txt"),
                             "--json")
    assert code == 2
    assert json.loads(out)["verdict"] == "error"
    assert err.startswith("pol: error: quote: expected 884 bytes") and err.count("\n") == 1


@pytest.mark.parametrize("what", ["policy", "collateral", "nonce", "missing_quote"])
def test_tee_cli_other_malformed_inputs_exit_2(state: Path, what: str) -> None:
    nonce, ev = _attest(state)
    policy = state / "policy.json"
    args = [str(ev / "quote.bin"), "--policy", str(policy), "--state", str(state), "--nonce", nonce,
            "--input", str(state.parent / "input.txt")]
    if what == "policy":
        policy.write_text('{"schema_version": 1}')
    elif what == "collateral":
        (ev / "offered.json").write_text("{}")
        args += ["--collateral", str(ev / "offered.json")]
    elif what == "nonce":
        args[-1] = "abcd"
    else:
        args[0] = str(ev / "absent.bin")
    code, _, err = _invoke("verify", *args)
    assert code == 2, err
    assert err.startswith("pol: error:")


def test_tee_cli_overflowing_number_in_collateral_is_an_error_document(state: Path) -> None:
    # 1e999 parses to inf, which canonical JSON cannot encode: it must be refused while parsing.
    nonce, ev = _attest(state)
    collateral = ev / "offered.json"
    collateral.write_bytes((state / "collateral.json").read_bytes().replace(b'{"body":{', b'{"body":{"extra":1e999,', 1))
    code, out, err = _invoke("verify", str(ev / "quote.bin"), "--policy", str(state / "policy.json"),
                             "--state", str(state), "--nonce", nonce, "--input", str(state.parent / "input.txt"),
                             "--collateral", str(collateral), "--json")
    assert code == 2, err
    doc = json.loads(out)
    assert doc["verdict"] == "error" and "collateral" in doc["error"] and "out of range" in doc["error"]
    assert err.startswith("pol: error: collateral") and err.count("\n") == 1


def test_tee_cli_debug_enclave_rejected(state: Path) -> None:
    nonce, ev = _attest(state, "--debug")
    code, doc = _verify_json(state, ev / "quote.bin", "--nonce", nonce)
    assert code == 1 and doc["reasons"] == ["debug_enclave"] and doc["claims"]["debug"] is True


def test_tee_cli_out_of_date_and_revoked_collateral_rejected(state: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(group, ["collateral", "--state", str(state), "--status", "OutOfDate",
                                 "--advisory", "INTEL-SA-00615"]).exit_code == 0
    nonce, ev = _attest(state)
    code, doc = _verify_json(state, ev / "quote.bin", "--nonce", nonce)
    assert code == 1 and doc["reasons"] == ["tcb_status_not_allowed"]
    assert doc["tcb_status"] == "OutOfDate" and doc["advisory_ids"] == ["INTEL-SA-00615"]
    assert runner.invoke(group, ["collateral", "--state", str(state), "--revoke"]).exit_code == 0
    nonce, ev = _attest(state)
    code, doc = _verify_json(state, ev / "quote.bin", "--nonce", nonce)
    assert code == 1 and doc["reasons"] == ["platform_revoked"]


def test_tee_cli_policy_command_pins_function_and_svn(state: Path, tmp_path: Path) -> None:
    policy = tmp_path / "strict.json"
    runner = CliRunner()
    result = runner.invoke(group, ["policy", "--state", str(state), "--out", str(policy), "--function", "linear-fit",
                                   "--min-isv-svn", "2"])
    assert result.exit_code == 0, result.output
    measured = runner.invoke(group, ["measure", "--function", "linear-fit"]).output.strip()
    assert json.loads(policy.read_text())["allowed_mr_enclave"] == [measured]
    for extra, expected in ((("--isv-svn", "2"), ["mr_enclave_not_allowed"]),
                            (("--function", "linear-fit"), ["isv_svn_too_low"]),
                            (("--function", "linear-fit", "--isv-svn", "2"), [])):
        nonce, ev = _attest(state, *extra)
        code, out, _ = _invoke("verify", str(ev / "quote.bin"), "--policy", str(policy), "--state", str(state),
                               "--nonce", nonce, "--input", str(state.parent / "input.txt"), "--json")
        assert json.loads(out)["reasons"] == expected
        assert code == (0 if not expected else 1)


def test_tee_cli_policy_refuses_to_pin_nothing(state: Path, tmp_path: Path) -> None:
    code, _, err = _invoke("policy", "--state", str(state), "--out", str(tmp_path / "p.json"))
    assert code == 2 and "pins no measurement" in err
    code, _, err = _invoke("policy", "--state", str(state), "--out", str(tmp_path / "p.json"),
                           "--allow-any-measurement")
    assert code == 0 and "WARNING" in err


def test_tee_cli_human_output_names_failed_check(state: Path) -> None:
    nonce, ev = _attest(state, "--isv-svn", "0")
    (ev / "output.bin").write_bytes(b"forged output")
    code, out, _ = _invoke("verify", str(ev / "quote.bin"), "--policy", str(state / "policy.json"),
                           "--state", str(state), "--nonce", nonce, "--input", str(state.parent / "input.txt"))
    assert code == 1
    assert "REJECTED" in out and "FAIL report_data" in out and "reasons: report_data_mismatch" in out


def test_tee_cli_attest_bad_input_exits_2(state: Path) -> None:
    bad = state.parent / "bad.csv"
    bad.write_bytes(b"not,a,pair\n")
    nonce = CliRunner().invoke(group, ["nonce", "--state", str(state)]).output.strip()
    code, _, err = _invoke("attest", str(bad), "--function", "linear-fit", "--nonce", nonce,
                           "--out", str(state.parent / "ev"), "--state", str(state))
    assert code == 2 and "linear-fit could not process" in err
    code, _, err = _invoke("attest", str(bad), "--nonce", "00" * 8, "--out", str(state.parent / "ev"),
                           "--state", str(state))
    assert code == 2 and "128 bits" in err


def test_tee_cli_attest_without_init_exits_2(tmp_path: Path) -> None:
    code, _, err = _invoke("attest", __file__, "--nonce", "00" * 32, "--out", str(tmp_path / "ev"),
                           "--state", str(tmp_path / "nothing"))
    assert code == 2 and "pol tee init" in err


# --------------------------------------------------------------------------- issue 12: the verifier's own inputs


def test_tee_cli_verify_needs_the_verifiers_own_nonce(state: Path) -> None:
    _, ev = _attest(state)
    code, _, err = _invoke("verify", str(ev / "quote.bin"), "--policy", str(state / "policy.json"),
                           "--state", str(state), "--input", str(state.parent / "input.txt"))
    assert code == 2 and "--nonce" in err  # never read from the prover's evidence.json


def test_tee_cli_old_collateral_from_the_prover_is_ignored(state: Path, tmp_path: Path) -> None:
    old = tmp_path / "old-collateral.json"
    old.write_bytes((state / "collateral.json").read_bytes())  # published before the revocation
    runner = CliRunner()
    assert runner.invoke(group, ["collateral", "--state", str(state), "--revoke"]).exit_code == 0
    nonce, ev = _attest(state)
    (ev / "collateral.json").write_bytes(old.read_bytes())  # the prover ships the old collateral beside its quote
    code, doc = _verify_json(state, ev / "quote.bin", "--nonce", nonce)
    assert code == 1 and doc["reasons"] == ["platform_revoked"]
    nonce, ev = _attest(state)
    code, doc = _verify_json(state, ev / "quote.bin", "--nonce", nonce, "--collateral", str(old))
    assert code == 1 and doc["reasons"] == ["platform_revoked"]  # offered to the store: older, not adopted
    assert doc["collateral"]["tcb_evaluation_data_number"] == 2


def test_tee_cli_host_without_the_platform_key_cannot_forge(state: Path, tmp_path: Path) -> None:
    # The trust boundary: platform.json plays the CPU's fused keys, so the hardware side (here
    # `state`) is the only holder. The verifier keeps its own state without it, and the host in
    # between holds only the evidence: it can change files, not quotes, and every forgery fails.
    verifier = tmp_path / "verifier"
    verifier.mkdir()
    for name in ("root.pub", "policy.json", "collateral.json"):
        (verifier / name).write_bytes((state / name).read_bytes())
    assert not (verifier / "platform.json").exists() and not (verifier / "vendor.json").exists()
    runner = CliRunner()
    data = state.parent / "input.txt"

    def attest_for_verifier() -> tuple[str, Path]:
        nonce = runner.invoke(group, ["nonce", "--state", str(verifier)]).output.strip()
        out = tmp_path / f"ev-{nonce[:8]}"
        result = runner.invoke(group, ["attest", str(state.parent / "input.txt"), "--nonce", nonce, "--out",
                                       str(out), "--state", str(state)])
        assert result.exit_code == 0, result.output
        return nonce, out

    nonce, ev = attest_for_verifier()
    code, doc = _verify_json(verifier, ev / "quote.bin", "--nonce", nonce, data=data)
    assert code == 0 and doc["verdict"] == "accepted (simulated)"
    nonce, ev = attest_for_verifier()
    (ev / "output.bin").write_bytes(b'{"forged": true}')  # another output under the genuine quote
    code, doc = _verify_json(verifier, ev / "quote.bin", "--nonce", nonce, data=data)
    assert code == 1 and doc["reasons"] == ["report_data_mismatch"]
    _, ev = attest_for_verifier()
    fresh = runner.invoke(group, ["nonce", "--state", str(verifier)]).output.strip()
    code, doc = _verify_json(verifier, ev / "quote.bin", "--nonce", fresh, data=data)  # old quote, new nonce
    assert code == 1 and doc["reasons"] == ["report_data_mismatch"]
    edited = bytearray((ev / "quote.bin").read_bytes())
    edited[48 + 258] ^= 1  # raise isv_svn in the signed body
    (ev / "quote.bin").write_bytes(bytes(edited))
    fresh = runner.invoke(group, ["nonce", "--state", str(verifier)]).output.strip()
    code, doc = _verify_json(verifier, ev / "quote.bin", "--nonce", fresh, data=data)
    assert code == 1 and "quote_signature_invalid" in doc["reasons"]


def test_tee_cli_refresh_adopts_newer_collateral_only(state: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_bytes((state / "collateral.json").read_bytes())
    code, _, err = _invoke("refresh", "--state", str(state))
    assert code == 0 and "unchanged" in err
    assert CliRunner().invoke(group, ["collateral", "--state", str(state), "--status", "OutOfDate"]).exit_code == 0
    code, _, err = _invoke("refresh", "--state", str(state))
    assert code == 0 and "adopted" in err
    code, _, err = _invoke("refresh", "--state", str(state), "--collateral", str(old))
    assert code == 1 and "stale" in err


def test_tee_cli_require_hardware_rejects_simulated_evidence(state: Path) -> None:
    nonce, ev = _attest(state)
    code, doc = _verify_json(state, ev / "quote.bin", "--nonce", nonce, "--require-hardware")
    assert code == 1 and doc["reasons"] == ["simulated_evidence"]
