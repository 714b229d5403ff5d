"""``pol import-legacy``: convert a reference-implementation proof directory (Jia et al.)."""

from __future__ import annotations

import click

from pol.cli._common import emit_json


@click.command("import-legacy")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Proof file to write (.pol.h5).")
@click.option("--model", "model_spec", default=None,
              help="Model the checkpoints belong to (built-in task or module:callable); used to match optimizer "
                   "state to parameter names, and recorded for the verifier.")
@click.option("--data", "data_spec", default=None, help="Data set the run used (recorded; not committed).")
@click.option("--num-samples", type=int, default=None, help="Training-set size (default: largest index + 1).")
@click.option("--force", is_flag=True, help="Overwrite an existing proof file.")
@click.option("--json", "json_output", is_flag=True, help="Print a JSON summary on stdout.")
def import_legacy(directory: str, out: str, model_spec: str | None, data_spec: str | None, num_samples: int | None,
                  force: bool, json_output: bool) -> None:
    """Convert DIRECTORY (model_step_N files, indices.npy, hash.txt) into a legacy proof.

    Checkpoints are loaded only with torch.load(weights_only=True); anything else is refused
    (exit 2). The result is marked legacy and unsigned: it is signed by a throwaway key made at
    import, which proves nothing about who trained.
    """
    from pol.legacy import import_legacy as run

    summary = run(directory, out, model_spec=model_spec, data_spec=data_spec, num_samples=num_samples,
                  overwrite=force)
    if json_output:
        emit_json({"schema_version": 1, **summary})
    else:
        click.echo(f"imported {summary['checkpoints']} checkpoints ({summary['steps']} steps) to {out}; "
                   "marked legacy and UNSIGNED (throwaway import key)", err=True)
