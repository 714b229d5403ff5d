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
@click.option("--json", "json_output", is_flag=True, help="Print a JSON summary on stdout.")
def train_cmd(out: str, keys_dir: str, threads: int, timeout: float, force: bool, json_output: bool,
              **kw: Any) -> None:
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
    existing = sorted(out_dir.glob("node*.pol.h5")) if out_dir.is_dir() else []
    if existing and not force:
        raise OutputExistsError(f"{out_dir} already holds node proofs ({existing[0].name}, ...); pass --force")
    for stale in existing:
        stale.unlink()
    args = [_flag(k, v) for k, v in kw.items()]
    flat = [a for pair in args for a in pair]
    flat += ["--out", str(out_dir), "--keys", str(keys), "--threads", str(threads), "--timeout", str(timeout)]
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
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def verify_cmd(run_dir: str, keys_dir: str | None, segments: int | None, seed: int | None, device: str,
               nodes: tuple[int, ...], data_spec: str | None, stage_modules: tuple[str, ...], json_output: bool) -> None:
    """Verify every node of a run (exit 0 verified, 1 rejected naming the blamed nodes, 2 cannot judge)."""
    from pol.errors import InputError
    from verifier.split import SplitVerifyOptions, verify_pipeline

    custom = {}
    for item in stage_modules:
        index, sep, spec = item.partition("=")
        if not sep or not index.isdigit():
            raise InputError(f"--stage-module takes INDEX=module:callable, not {item!r}")
        custom[int(index)] = spec
    opts = SplitVerifyOptions(segments=segments, seed=seed, device=device, data=data_spec, stage_modules=custom)
    with ProgressFactory(progress_enabled(json_output)) as bars:
        report = verify_pipeline(run_dir, keys=keys_dir, options=opts, nodes=list(nodes) or None, progress=bars)
    if json_output:
        click.echo(report.to_json())
    else:
        report.render(sys.stderr)
    sys.exit(report.exit_code)
