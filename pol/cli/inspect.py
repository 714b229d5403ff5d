"""``pol inspect``: summarise a proof file without verifying it."""

from __future__ import annotations

import click

from pol.cli._common import emit_json


def summarize(path: str) -> dict:
    from pol.keys import fingerprint
    from pol.proof_file import ProofReader

    with ProofReader(path) as r:
        plan = r.plan
        return {
            "schema_version": 1,
            "proof": path,
            "format_version": r.tree.attrs["format_version"],
            "mode": r.mode,
            "codec": r.codec,
            "legacy": r.legacy,
            "plan_digest": r.plan_digest.hex(),
            "signer_fingerprint": fingerprint(r.signer_public_key),
            "created_at": plan.created_at,
            "seed": plan.seed,
            "nonce": plan.nonce,
            "run_seed": plan.run_seed,
            "model": plan.model,
            "data": {k: v for k, v in plan.data.items()},
            "optimizer": plan.optimizer,
            "lr_schedule": plan.lr_schedule,
            "step": plan.step,
            "batch_size": plan.batch_size,
            "step_digests": plan.step_digests,
            "every": plan.every,
            "planned_steps": plan.num_steps,
            "recorded_steps": r.num_recorded_steps,
            "checkpoints": r.num_checkpoints,
            "stored_checkpoints": len(r.stored_checkpoints),
            "finished": r.final is not None,
            "chain_head": r.final["chain_head"].hex() if r.final else None,
            "final_weights_digest": r.final["final_weights_digest"].hex() if r.final else None,
            "environment": plan.environment,
            "file_bytes": r.stored_bytes(),
            "extra_sections": sorted(k for k in r.tree.members if k in ("zk", "responses")),
        }


@click.command("inspect")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def inspect_cmd(proof: str, json_output: bool) -> None:
    """Summarise a proof file (does not verify it)."""
    from pol.terminal import printable

    info = summarize(proof)
    if json_output:
        emit_json(info)
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key in ("schema_version",):
            continue
        click.echo(f"{key:<{width}}  {printable(value)}")
