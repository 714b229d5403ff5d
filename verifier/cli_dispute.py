"""``pol dispute run`` (narrow a segment to one step, write a fraud proof) and ``pol dispute referee``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from pol.cli._common import emit_json, json_option

_DATA_OPTIONS = [
    click.option("--data", "data_spec", default=None, help="module:callable giving the data (custom tasks)."),
    click.option("--data-kwargs", default=None, help="JSON kwargs for the data builder (default: the plan's)."),
    click.option("--model", "model_spec", default=None, help="module:callable building the model (custom tasks)."),
    click.option("--loss", "loss_spec", default=None, help="module:callable of a custom loss the plan names."),
]


def _data_options(fn: Any) -> Any:
    for option in reversed(_DATA_OPTIONS):
        fn = option(fn)
    return fn


@click.group("dispute")
def group() -> None:
    """Disputes over one segment: bisect to a single step, write and referee fraud proofs."""


@group.command("run")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--segment", type=click.IntRange(min=0), required=True, help="The segment that does not replay.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Fraud proof to write (HDF5).")
@click.option("--prover-key", default=None, type=click.Path(dir_okay=False),
              help="Run the prover too (the proof's signing key): two torch.distributed processes, bisection "
                   "with signed claims. Without it the verifier works alone (one step only where the proof "
                   "commits per-step digests).")
@click.option("--timeout", type=click.IntRange(min=1), default=600, show_default=True,
              help="Seconds before the two parties are stopped.")
@_data_options
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def run_cmd(proof: str, segment: int, out: str, prover_key: str | None, timeout: int, data_spec: str | None,
            data_kwargs: str | None, model_spec: str | None, loss_spec: str | None, json_output: bool) -> None:
    """Replay SEGMENT, find the first step whose result is disputed and write a fraud proof
    (exit 0 written, 1 the segment replays: nothing to dispute, 2 unusable input)."""
    if prover_key is None:
        summary, code = _alone(proof, segment, out, data_spec, json_option(data_kwargs, "--data-kwargs"),
                               model_spec, loss_spec)
    else:
        summary, code = _two_parties(proof, segment, out, prover_key, timeout,
                                     [*_flag("--data", data_spec), *_flag("--data-kwargs", data_kwargs),
                                      *_flag("--model", model_spec), *_flag("--loss", loss_spec)])
    document = {"schema_version": 1, "verdict": "fraud proof written" if code == 0 else "no dispute",
                "checks": [{"name": "segment_replays", "passed": code != 0,
                            "figure": "reproduces" if code != 0 else f"steps {summary.get('disputed_steps')} disputed",
                            "detail": "; ".join(summary.get("log", []))}], **summary}
    if json_output:
        emit_json(document)
    else:
        for line in summary.get("log", []):
            click.echo(f"  {line}", err=True)
        if code == 0:
            click.echo(f"fraud proof for steps {summary['disputed_steps']} written to {out} "
                       f"({summary['rounds']} round(s), state from {summary['state_source']})", err=True)
        else:
            click.echo(f"segment {segment} replays: nothing to dispute", err=True)
    sys.exit(code)


def _flag(name: str, value: str | None) -> list[str]:
    return [name, value] if value is not None else []


def _alone(proof: str, segment: int, out: str, data: str | None, data_kwargs: dict | None, model: str | None,
           loss: str | None) -> tuple[dict[str, Any], int]:
    from pol.proof_file import ProofReader
    from verifier.dispute import dispute_segment
    from verifier.fraud_proof import write_fraud_proof
    from verifier.subject import proof_subject
    from verifier.unit_replay import ExactUnitReplayer

    with ProofReader(proof, model_spec=model) as reader:
        units = ExactUnitReplayer(reader, data=data, model=model, loss=loss, data_kwargs=data_kwargs)
        outcome = dispute_segment(units, segment, proof_subject(reader).digest)
    summary = outcome.summary()
    if outcome.fraud_proof is None:
        return summary, 1
    write_fraud_proof(out, outcome.fraud_proof)
    summary["fraud_proof"] = out
    return summary, 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_parties(proof: str, segment: int, out: str, prover_key: str, timeout: int,
                 extra: list[str]) -> tuple[dict[str, Any], int]:
    """Spawn prover (rank 0) and verifier (rank 1) with the environment torchrun gives them."""
    from pol.errors import InputError, PolError

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2",
           "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    with tempfile.TemporaryDirectory(prefix="pol-dispute-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        base = [sys.executable, "-m", "verifier.dispute_party", os.path.abspath(proof), "--segment", str(segment),
                *extra]
        commands = [base + ["--prover-key", os.path.abspath(prover_key)],
                    base + ["--out", os.path.abspath(out), "--summary", str(summary_path)]]
        procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for r, cmd in enumerate(commands)]
        deadline, failed_at = time.monotonic() + timeout, None
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            if failed_at is None and any(p.poll() not in (None, 0, 1) for p in procs):
                failed_at = now
            if now > deadline or (failed_at is not None and now - failed_at > 5):
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                break
            time.sleep(0.05)
        errors = [(r, p.wait(), (p.stderr.read() if p.stderr else b"").decode(errors="replace").strip())
                  for r, p in enumerate(procs)]
        verifier_code = errors[1][1]
        if verifier_code in (0, 1) and errors[0][1] == 0 and summary_path.exists():
            return json.loads(summary_path.read_text()), verifier_code
    party = {0: "prover", 1: "verifier"}
    reasons = [f"{party[r]}: {(err.splitlines() or [f'exit code {code}'])[-1][:300]}" for r, code, err in errors
               if code not in (0, 1)]
    message = "; ".join(reasons) or "the parties stopped without a result"
    if any(code == 2 for _, code, _ in errors):
        raise InputError(f"the dispute could not run: {message}")
    raise PolError(f"the dispute did not finish: {message}")


@group.command("referee")
@click.argument("fraud", type=click.Path(dir_okay=False))
@click.option("--proof", required=True, type=click.Path(dir_okay=False), help="The proof the fraud proof accuses.")
@click.option("--key", required=True, help="Trusted signer of the proof: a public key file or a fingerprint.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@_data_options
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def referee_cmd(fraud: str, proof: str, key: str, device: str, data_spec: str | None, data_kwargs: str | None,
                model_spec: str | None, loss_spec: str | None, json_output: bool) -> None:
    """Check a fraud proof by replaying its one step (exit 0 proven, 1 not proven, 2 unusable input)."""
    from verifier.fraud_proof import referee

    result = referee(fraud, proof, key, data=data_spec, model=model_spec, loss=loss_spec, device=device,
                     data_kwargs=json_option(data_kwargs, "--data-kwargs"))
    if json_output:
        emit_json(result.to_dict())
    else:
        out = sys.stderr
        out.write(f"fraud proof {fraud} against {proof} (steps {result.info['start_step']}-"
                  f"{result.info['stop_step']})\n")
        for c in result.checks:
            out.write(f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<13} {c.figure}\n")
            if c.detail and not c.passed:
                out.write(f"        {c.detail}\n")
        out.write(f"verdict: {result.verdict.upper()}\n")
    sys.exit(result.exit_code)
