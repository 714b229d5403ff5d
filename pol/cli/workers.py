"""``pol workers train|verify``: federated training with untrusted workers, and its verification."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from pol.cli._common import ProgressFactory, emit_json, progress_enabled


@click.group("workers")
def group() -> None:
    """Untrusted data-parallel workers: a coordinator that replays before it aggregates."""


def _keys(directory: Path, workers: int) -> tuple[Path, str]:
    from pol.keys import generate_keypair

    directory.mkdir(parents=True, exist_ok=True)
    for name in ["coordinator"] + [f"worker{w}" for w in range(1, workers + 1)]:
        if not (directory / f"{name}.key").exists():
            generate_keypair(directory / name)
    return directory / "coordinator.key", str(directory / "worker{rank}.key")


@group.command("train")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Coordinator log to write (.h5).")
@click.option("--workers", default=4, show_default=True, help="Number of worker processes (ranks 1..N).")
@click.option("--malicious", default=0, show_default=True, help="How many workers (the highest ids) run --attack.")
@click.option("--attack", default=None, help="Behaviour of the malicious workers (scripts/attacks_workers), "
                                             "e.g. model-replacement, label-flipping, free-rider-noise.")
@click.option("--aggregator", type=click.Choice(["replay_verified", "fedavg", "median", "trimmed_mean", "krum"]),
              default="replay_verified", show_default=True)
@click.option("--rounds", default=10, show_default=True)
@click.option("--local-steps", default=10, show_default=True, help="Local SGD steps per worker and round.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--lr", type=float, default=None, help="Learning rate (default: the task's).")
@click.option("--seed", default=0, show_default=True)
@click.option("--task", default="digits-mlp", show_default=True, help="Built-in task (its data, model, loss).")
@click.option("--replay-fraction", default=1.0, show_default=True,
              help="Share of each round's submissions the coordinator replays (1: all).")
@click.option("--exclusion", type=click.Choice(["ban", "drop"]), default="ban", show_default=True,
              help="A rejected worker is banned for the run, or dropped for the round only.")
@click.option("--assume-malicious", "assumed_f", type=int, default=None,
              help="f for trimmed mean / Krum (default: --malicious, at least 1).")
@click.option("--round-timeout", default=60.0, show_default=True, help="Seconds a round waits for submissions.")
@click.option("--keys", "keys_dir", default="keys", show_default=True, type=click.Path(file_okay=False),
              help="Key directory: coordinator.key and workerN.key (created when missing).")
@click.option("--threads", default=1, show_default=True, help="torch threads per process (recorded in the plan).")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds before the whole job is ended.")
@click.option("--force", is_flag=True, help="Overwrite an existing log.")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def train_cmd(out: str, workers: int, malicious: int, attack: str | None, aggregator: str, rounds: int,
              local_steps: int, batch_size: int, lr: float | None, seed: int, task: str, replay_fraction: float,
              exclusion: str, assumed_f: int | None, round_timeout: float, keys_dir: str, threads: int,
              timeout: float, force: bool, json_output: bool) -> None:
    """Run a federated job on this machine: a coordinator and N worker processes (torch.distributed)."""
    from pol.errors import InputError, OutputExistsError
    from pol.workers.behaviour import load_behaviour
    from pol.workers.config import NodeConfig, RunSpec
    from pol.workers.launch import launch_local

    if workers < 1 or not 0 <= malicious <= workers:
        raise InputError("need --workers >= 1 and 0 <= --malicious <= --workers")
    if malicious and not attack:
        raise InputError("--malicious needs --attack NAME")
    if Path(out).exists() and not force:
        raise OutputExistsError(f"{out} exists; pass --force to replace it")
    behaviours = {str(w): attack for w in range(workers - malicious + 1, workers + 1)} if malicious else {}
    extra_path, behaviour = [], None
    if attack:
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())  # the attacks are the repository's demo code (scripts/attacks_workers)
        behaviour = load_behaviour(attack, "scripts.attacks_workers")  # an unknown name fails here, not in N processes
        extra_path.append(_import_root(behaviour))
    coordinator_key, worker_keys = _keys(Path(keys_dir), workers)
    spec = RunSpec(out=out, task=task, rounds=rounds, local_steps=local_steps, batch_size=batch_size, lr=lr,
                   seed=seed, aggregator=aggregator, f=assumed_f if assumed_f is not None else max(1, malicious),
                   replay_fraction=replay_fraction, exclusion=exclusion, round_timeout_s=round_timeout,
                   behaviours=behaviours)
    with tempfile.TemporaryDirectory(prefix="pol-workers-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        config = NodeConfig([spec], str(coordinator_key), worker_keys, threads=threads, overwrite=force,
                            summary=str(summary_path), verbose=not json_output)
        config.save(Path(tmp) / "job.json")
        launched = launch_local(Path(tmp) / "job.json", workers, timeout_s=timeout, threads=threads,
                                python_path=extra_path)
        if launched.coordinator_exit != 0 or not summary_path.exists():
            raise InputError(f"the federated job did not complete (coordinator exit {launched.coordinator_exit})")
        summary = json.loads(summary_path.read_text())
    doc = _train_document(out, spec, summary, workers, behaviours, str(Path(keys_dir) / "coordinator.pub"), behaviour)
    if json_output:
        emit_json(doc)
    else:
        _render_train(doc)


def _import_root(obj: Any) -> str:
    """The sys.path entry the object's top-level package was imported from (for the spawned nodes)."""
    top = sys.modules[getattr(type(obj), "__module__", None) or obj.__module__].__name__.split(".")[0]
    file = Path(sys.modules[top].__file__ or ".").resolve()
    return str(file.parent.parent if file.name == "__init__.py" else file.parent)


def _train_document(out: str, spec: Any, summary: dict[str, Any], workers: int, behaviours: dict[str, str],
                    coordinator_pub: str, behaviour: Any = None) -> dict[str, Any]:
    from pol.tasks import load_data
    from pol.workers.evaluate import accuracy, predictions
    from pol.workers.log import read_log
    from pol.workers.plan import FederatedPlan

    run = summary["runs"][0]
    log = read_log(out)
    plan = FederatedPlan.from_bytes(log.plan_bytes)
    heldout = load_data(spec.task).heldout
    main_accuracy = accuracy(plan.model["spec"], plan.model["kwargs"], log.final_weights, *heldout.tensors)
    success = getattr(behaviour, "success", None)
    attack_success = success(lambda xs: predictions(plan.model["spec"], plan.model["kwargs"], log.final_weights, xs),
                             *heldout.tensors) if success else None
    checks = []
    for w in range(1, workers + 1):
        mine = [s for s in run["submissions"] if s["worker"] == w]
        accepted = sum(s["status"] == "accepted" for s in mine)
        rejected = [s for s in mine if s["status"] == "rejected"]
        missing = sum(s["status"] == "missing" for s in mine)
        excluded = sum(s["status"] == "excluded" for s in mine)
        detail = (f"first rejected in round {rejected[0]['round']} by the {rejected[0]['check']} check"
                  if rejected else ("missing in some rounds (crashed or timed out)" if missing else ""))
        checks.append({"name": f"worker {w} ({behaviours.get(str(w), 'honest')})",
                       "passed": (not rejected) if not missing or rejected else None,
                       "figure": f"{accepted} of {accepted + len(rejected)} submissions accepted"
                                 + (f", excluded from {excluded} rounds" if excluded else ""),
                       "detail": detail})
    trained, replayed = run["trained_worker_steps"], run["replayed_worker_steps"]
    return {"schema_version": 1, "verdict": "completed", "checks": checks, "log": out,
            "aggregator": spec.aggregator, "rounds": spec.rounds, "main_accuracy": round(main_accuracy, 4),
            "attack_success": None if attack_success is None else round(attack_success, 4),
            "verify_compute_fraction": round(replayed / trained, 4) if trained else None,
            "coordinator_seconds": round(run["seconds"], 3), "lost_workers": summary.get("lost", {}),
            "verify_command": f"pol workers verify {out} --key {coordinator_pub}"}


def _render_train(doc: dict[str, Any]) -> None:
    out = sys.stderr
    out.write(f"federated run {doc['log']}: aggregation {doc['aggregator']}, {doc['rounds']} rounds\n")
    for c in doc["checks"]:
        mark = {True: "OK  ", False: "REJ ", None: "GONE"}[c["passed"]]
        out.write(f"  {mark} {c['name']:<34} {c['figure']}" + (f"; {c['detail']}" if c["detail"] else "") + "\n")
    out.write(f"  held-out accuracy of the final global model: {doc['main_accuracy']:.4f}\n")
    if doc["attack_success"] is not None:
        out.write(f"  attack success on the final model (backdoor: triggered held-out digits classified as the "
                  f"target): {doc['attack_success']:.4f}\n")
    if doc["verify_compute_fraction"] is not None:
        out.write(f"  coordinator replayed {doc['verify_compute_fraction']:.0%} of the trained worker-steps\n")
    out.write(f"  verify the run: {doc['verify_command']}\n")


@group.command("verify")
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--key", default=None, help="Trusted coordinator key: a public key file or a 40-hex fingerprint.")
@click.option("--replays", type=int, default=None, help="Accepted updates to replay (default 10%, at least 4).")
@click.option("--seed", type=int, default=None, help="Verifier seed for the replay sample (default: OS entropy).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--data", "data_spec", default=None, help="module:callable giving the data (custom tasks).")
@click.option("--model", "model_spec", default=None, help="module:callable building the model (custom tasks).")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def verify_cmd(log: str, key: str | None, replays: int | None, seed: int | None, device: str,
               data_spec: str | None, model_spec: str | None, json_output: bool) -> None:
    """Verify a coordinator log (exit 0 verified, 1 rejected, 2 could not verify)."""
    from verifier.workers import WorkersVerifyOptions, verify_log

    opts = WorkersVerifyOptions(replays=replays, seed=seed, device=device, data=data_spec, model=model_spec)
    with ProgressFactory(progress_enabled(json_output)) as bars:
        report = verify_log(log, public_key=key, options=opts, progress=bars)
    if json_output:
        click.echo(report.to_json())
    else:
        report.render(sys.stderr)
    sys.exit(report.exit_code)
