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


def _verify_json(state: Path, quote: Path, *extra: str) -> tuple[int, dict]:
    code, out, _ = _invoke("verify", str(quote), "--policy", str(state / "policy.json"), "--state", str(state),
                           "--json", *extra)
    return code, json.loads(out)


def test_tee_cli_attest_then_verify_accepts(state: Path) -> None:
    nonce, ev = _attest(state)
    assert {p.name for p in ev.iterdir()} == {"quote.bin", "output.bin", "collateral.json", "evidence.json"}
    code, doc = _verify_json(state, ev / "quote.bin", "--nonce", nonce)
    assert code == 0
    assert doc["schema_version"] == 1 and doc["verdict"] == "accepted" and doc["simulated"] is True
    assert doc["tcb_status"] == "UpToDate" and doc["reasons"] == []
    assert all(set(c) >= {"name", "passed", "figure", "detail"} and c["passed"] for c in doc["checks"])
    assert json.loads((ev / "output.bin").read_bytes())["length"] == 12


def test_tee_cli_replayed_nonce_is_caught_across_processes(state: Path) -> None:
    nonce, ev = _attest(state)
    cmd = [str(POL), "tee", "verify", str(ev / "quote.bin"), "--policy", str(state / "policy.json"),
           "--state", str(state), "--nonce", nonce, "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 1, second.stderr
    assert json.loads(second.stdout)["reasons"] == ["nonce_replayed"]


def test_tee_cli_verify_reads_nonce_from_evidence_but_registry_decides(state: Path) -> None:
    _, ev = _attest(state)
    code, doc = _verify_json(state, ev / "quote.bin")
    assert code == 0, doc
    code, doc = _verify_json(state, ev / "quote.bin")
    assert code == 1 and doc["reasons"] == ["nonce_replayed"]


def test_tee_cli_malformed_quote_exits_2(state: Path) -> None:
    nonce, ev = _attest(state)
    (ev / "quote.bin").write_bytes((ev / "quote.bin").read_bytes()[:-3])
    code, out, err = _invoke("verify", str(ev / "quote.bin"), "--policy", str(state / "policy.json"),
                             "--state", str(state), "--nonce", nonce, "--json")
    assert code == 2
    assert json.loads(out)["verdict"] == "error"
    assert err.startswith("pol: error: quote: expected 850 bytes") and err.count("\n") == 1


@pytest.mark.parametrize("what", ["policy", "collateral", "nonce", "missing_quote"])
def test_tee_cli_other_malformed_inputs_exit_2(state: Path, what: str) -> None:
    nonce, ev = _attest(state)
    policy = state / "policy.json"
    args = [str(ev / "quote.bin"), "--policy", str(policy), "--state", str(state), "--nonce", nonce]
    if what == "policy":
        policy.write_text('{"schema_version": 1}')
    elif what == "collateral":
        (ev / "collateral.json").write_text("{}")
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
    collateral = ev / "collateral.json"
    collateral.write_bytes(collateral.read_bytes().replace(b'{"body":{', b'{"body":{"extra":1e999,', 1))
    code, out, err = _invoke("verify", str(ev / "quote.bin"), "--policy", str(state / "policy.json"),
                             "--state", str(state), "--nonce", nonce, "--json")
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
                               "--nonce", nonce, "--json")
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
                           "--state", str(state), "--nonce", nonce)
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
