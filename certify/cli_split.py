"""``pol split`` commands for certifying a pipeline's nodes (docs/CERTIFY.md); added to the
``pol split`` group by :mod:`pol.cli.split`. Heavy imports stay inside each command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pol.cli._common import emit_json


@click.command("check-commitments")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--node", "nodes", type=int, multiple=True, help="Open only these nodes' commitments (repeat).")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def check_commitments_cmd(run_dir: str, nodes: tuple[int, ...], json_output: bool) -> None:
    """Auditor: open every node's final-weights commitment (RUN/node<r>.commitment.json) against the
    final weights of its signed chain in RUN/node<r>.pol.h5 (exit 0 all open, 1 one does not, 2 unusable)."""
    from pol.errors import InputError
    from pol.split.proof import node_proof_path
    from verifier.report import Report

    from certify.node_commitment import audit_node_commitment, commitment_path, load_commitment

    run = Path(run_dir)
    ranks = sorted(set(nodes)) or sorted(int(p.name[4:-7]) for p in run.glob("node*.pol.h5") if p.name[4:-7].isdigit())
    if not ranks:
        raise InputError(f"{run} holds no node proofs")
    report = Report(str(run))
    for rank in ranks:
        if not commitment_path(run, rank).is_file():
            raise InputError(f"{commitment_path(run, rank)} is missing (was the run trained with --commit?)")
        audit = audit_node_commitment(node_proof_path(run, rank), load_commitment(commitment_path(run, rank)))
        if audit.rank != rank:
            raise InputError(f"{node_proof_path(run, rank)} is node {audit.rank}'s proof, not node {rank}'s")
        report.add(f"node{rank}.commitment", audit.opened, f"{audit.clipped} clipped" if audit.opened else "",
                   audit.reason)
    if json_output:
        emit_json(report.to_dict())
    else:
        report.render(sys.stderr)
    sys.exit(report.exit_code)
