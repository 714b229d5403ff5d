"""``pol split train|verify``: a split-learning pipeline of untrusted nodes (docs/SPLIT.md)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from pol.cli._common import ProgressFactory, emit_json, progress_enabled
from pol.split.node import config_options


@click.group("split")
def group() -> None:
    """Split learning: nodes on torch.distributed, each proving its own stage."""


@group.command("train")
@config_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory (node<rank>.pol.h5).")
@click.option("--keys", "keys_dir", required=True, type=click.Path(file_okay=False),
              help="Key directory: node<rank>.key/.pub for every node (missing ones are created).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads per node.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds a node waits for a peer.")
@click.option("--force", is_flag=True, help="Overwrite existing node proofs in --out.")
@click.option("--attest", default=None, type=click.Path(file_okay=False),
              help="SIMULATED TEE: before the plan is signed every node attests to the checker whose state is "
                   "this `pol tee init` directory; the run starts only if all are admitted (RUN/attestation.json).")
@click.option("--commit", is_flag=True,
              help="At the end, every node commits to its final weights (zk Pedersen), bound to its signed chain: "
                   "RUN/node<r>.commitment.json; the secret opening in RUN/openings/.")
@click.option("--json", "json_output", is_flag=True, help="Print a JSON summary on stdout.")
def train_cmd(out: str, keys_dir: str, threads: int, timeout: float, force: bool, attest: str | None,
              commit: bool, json_output: bool, **kw: Any) -> None:
    """Spawn the pipeline's nodes as local processes (rendezvous on 127.0.0.1) and train."""
    from pol.errors import OutputExistsError
    from pol.keys import generate_keypair
    from pol.split.launch import launch_local, raise_for_failure
    from pol.split.node import make_config

    from pol.split.planning import check_config

    config = make_config(**kw)
    check_config(config)
    nodes = config.num_nodes
    keys = Path(keys_dir)
    for rank in range(nodes):
        if not (keys / f"node{rank}.key").exists():
            generate_keypair(keys / f"node{rank}")
            click.echo(f"created key pair {keys / f'node{rank}'}.key/.pub", err=True)
    out_dir = Path(out)
    existing = sorted([*out_dir.glob("node*.pol.h5"), *out_dir.glob("node*.label-noise-secret.json")]) \
        if out_dir.is_dir() else []
    if existing and not force:
        raise OutputExistsError(f"{out_dir} already holds node proofs ({existing[0].name}, ...); pass --force")
    for stale in existing:
        stale.unlink()
    args = [_flag(k, v) for k, v in kw.items()]
    flat = [a for pair in args for a in pair]
    flat += ["--out", str(out_dir), "--keys", str(keys), "--threads", str(threads), "--timeout", str(timeout)]
    if attest is not None:
        from certify.pipeline_attestation import ATTESTATION_FILE, check_tee_dir

        flat += ["--attest", str(check_tee_dir(attest).resolve())]
        (out_dir / ATTESTATION_FILE).unlink(missing_ok=True)
    if commit:
        flat.append("--commit")
    for stale_commitment in (sorted(out_dir.glob("node*.commitment.json")) if out_dir.is_dir() else []):
        stale_commitment.unlink()
    click.echo(f"pol split: starting {nodes} node processes ({config.stages} stages, labels at the "
               f"{config.labels_at} node)", err=True)
    started = time.perf_counter()
    result = launch_local(flat, nodes)
    first = result.first_failure
    if first is not None:
        try:
            raise_for_failure(result)
        except Exception as exc:
            click.echo(f"pol: error: {exc}", err=True)
        sys.exit(2 if first.returncode == 2 else 1)
    elapsed = time.perf_counter() - started
    results = sorted(result.results, key=lambda r: r["rank"])
    summary = {"run_dir": str(out_dir), "nodes": results, "plan_digest": results[0]["plan_digest"] if results else None,
               "seconds": round(elapsed, 2)}
    if attest is not None:
        summary["attestation"] = str(out_dir / "attestation.json")
    if json_output:
        emit_json(summary)
    else:
        loss = next((r["final_loss"] for r in results if r["final_loss"] is not None), None)
        click.echo(f"recorded {results[0]['num_steps']} steps on {nodes} nodes to {out_dir} in {elapsed:.1f}s"
                   + (f" (final loss {loss:.4f})" if loss is not None else ""), err=True)


def _flag(name: str, value: Any) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if name == "stage_modules":
        return [a for spec in value for a in ("--stage-module", spec)]
    if value is None:
        return []
    return [flag, str(value)]


@group.command("verify")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--keys", "keys_dir", default=None, type=click.Path(file_okay=False),
              help="Directory of trusted public keys (*.pub). Without it every node is only self-asserted.")
@click.option("--segments", type=int, default=None, help="Segments to replay per node (default ~4%, at least 4).")
@click.option("--seed", type=int, default=None, help="Verifier seed for segment choice (default: OS entropy).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--node", "nodes", type=int, multiple=True, help="Judge only these nodes (repeat); messages are still "
              "cross-checked against every neighbour's headers.")
@click.option("--data", "data_spec", default=None, help="module:callable giving the data (custom tasks).")
@click.option("--stage-module", "stage_modules", multiple=True, help="INDEX=module:callable for a custom stage.")
@click.option("--response", "responses", multiple=True,
              help="RANK=FILE: node RANK's response to your challenge (compact proofs); needs --challenge RANK=FILE.")
@click.option("--challenge", "challenges", multiple=True,
              help="RANK=FILE: the challenge you issued to node RANK with 'pol split challenge'.")
@click.option("--label-noise-secret", default=None, type=click.Path(dir_okay=False),
              help="The label owner's label-noise secret, when its plan commits label noise (default: "
                   "node<r>.label-noise-secret.json in RUN_DIR); only the label owner's replay needs it.")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def verify_cmd(run_dir: str, keys_dir: str | None, segments: int | None, seed: int | None, device: str,
               nodes: tuple[int, ...], data_spec: str | None, stage_modules: tuple[str, ...],
               responses: tuple[str, ...], challenges: tuple[str, ...], label_noise_secret: str | None,
               json_output: bool) -> None:
    """Verify every node of a run (exit 0 verified, 1 rejected naming the blamed nodes, 2 cannot judge)."""
    from pol.errors import InputError
    from verifier.split import SplitVerifyOptions, verify_pipeline

    custom = {int(k): v for k, v in _pairs(stage_modules, "--stage-module", "INDEX=module:callable").items()}
    answered, issued = _pairs(responses, "--response", "RANK=FILE"), _pairs(challenges, "--challenge", "RANK=FILE")
    if set(answered) != set(issued):
        raise InputError("--response and --challenge go together, one pair per node: the node's response and "
                         "the challenge you issued to it")
    opts = SplitVerifyOptions(segments=segments, seed=seed, device=device, data=data_spec, stage_modules=custom,
                              label_noise_secret=label_noise_secret)
    with ProgressFactory(progress_enabled(json_output)) as bars:
        report = verify_pipeline(run_dir, keys=keys_dir, options=opts, nodes=list(nodes) or None, progress=bars,
                                 responses={r: (answered[r], issued[r]) for r in answered})
    if json_output:
        click.echo(report.to_json())
    else:
        report.render(sys.stderr)
    sys.exit(report.exit_code)


def _pairs(items: tuple[str, ...], option: str, form: str) -> dict[int, str]:
    from pol.errors import InputError

    out = {}
    for item in items:
        index, sep, value = item.partition("=")
        if not sep or not index.isdigit() or not value:
            raise InputError(f"{option} takes {form}, not {item!r}")
        out[int(index)] = value
    return out


@group.command("challenge")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--node", "rank", type=int, required=True, help="The node to challenge.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Challenge file to write (JSON).")
@click.option("--segments", type=int, default=None, help="Segments to challenge (default ~4%, at least 4).")
@click.option("--seed", type=int, default=None, help="Verifier seed (default: OS entropy).")
def challenge_cmd(run_dir: str, rank: int, out: str, segments: int | None, seed: int | None) -> None:
    """Verifier: challenge segments of one node's compact proof, with your own randomness."""
    from pol.split.proof import NodeProofReader, node_proof_path
    from verifier.sampling import default_segment_count
    from verifier.split.challenge import make_challenge, save_challenge

    with NodeProofReader(node_proof_path(run_dir, rank)) as reader:
        n = reader.num_checkpoints - 1
        doc = make_challenge(reader, segments if segments is not None else default_segment_count(n), seed)
    save_challenge(doc, out)
    click.echo(f"challenged segments {doc['segments']} of node {rank}; send {out} to the node", err=True)


@group.command("respond")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--node", "rank", type=int, required=True, help="Your node (whose proof is challenged).")
@click.option("--challenge", "challenge_path", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Response file to write (HDF5).")
@click.option("--stage-module", "stage_modules", multiple=True, help="INDEX=module:callable for a custom stage.")
@click.option("--label-noise-secret", default=None, type=click.Path(dir_okay=False),
              help="Your label-noise secret, if you are the label owner of a run with label noise (default: "
                   "node<r>.label-noise-secret.json in RUN_DIR).")
def respond_cmd(run_dir: str, rank: int, challenge_path: str, out: str, stage_modules: tuple[str, ...],
                label_noise_secret: str | None) -> None:
    """Node: answer a challenge by exact replay from your anchors and your recorded inputs."""
    from pol.split.label_noise import secret_for
    from pol.split.proof import NodeProofReader, node_proof_path
    from verifier.split.api import SplitVerifyOptions, held_data, recorded_stack
    from verifier.split.challenge import read_challenge, respond
    from verifier.split.replay import NodeReplayer

    custom = {int(k): v for k, v in _pairs(stage_modules, "--stage-module", "INDEX=module:callable").items()}
    with NodeProofReader(node_proof_path(run_dir, rank)) as reader:
        device = recorded_stack(reader)
        replayer = NodeReplayer(reader, held_data(reader, SplitVerifyOptions()), device, custom,
                                secret_for(reader.plan, rank, reader.path, label_noise_secret))
        held = respond(reader, read_challenge(challenge_path), out, replayer)
    click.echo(f"wrote {out}: regenerated checkpoints {held}", err=True)


def _add_certify_commands() -> None:
    """The certification commands live in certify/ (imports inside each command stay lazy)."""
    from certify.cli_split import check_commitments_cmd, certify_cmd, verify_certificate_cmd, vote_cmd

    for command in (check_commitments_cmd, vote_cmd, certify_cmd, verify_certificate_cmd):
        group.add_command(command)


_add_certify_commands()
