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


@click.command("vote")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--verifier-key", required=True, type=click.Path(dir_okay=False), help="Your Ed25519 secret key (pol keygen).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for your votes: <your fingerprint>-node<r>.json, one per node.")
@click.option("--segments", type=int, default=None, help="Segments to replay per node (default ~4%, at least 4).")
@click.option("--seed", type=int, default=None, help="Your seed (default: OS entropy, recorded in each vote).")
@click.option("--data", "data_spec", default=None, help="module:callable giving the data (custom tasks).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def vote_cmd(run_dir: str, verifier_key: str, out_dir: str, segments: int | None, seed: int | None,
             data_spec: str | None, device: str, json_output: bool) -> None:
    """Verifier: judge every node of an attested, committed run (your own sample of each node's
    segments) and sign one vote per node on the run's certificate digest (exit 0 all verified, 1 not)."""
    from pol.keys import fingerprint, load_signing_key

    from certify.node_votes import cast_node_votes

    key = load_signing_key(verifier_key)
    digest, results = cast_node_votes(run_dir, key, out_dir, segments=segments, seed=seed, data=data_spec,
                                      device=device)
    doc = {"schema_version": 1, "verdict": "verified" if all(r.verdict == "verified" for r in results) else "rejected",
           "certificate_digest": digest.hex(), "verifier": fingerprint(bytes(key.verify_key)),
           "checks": [{"name": f"node{r.rank}", "passed": r.verdict == "verified", "figure": r.verdict,
                       "detail": f"segments replayed {r.segments}; vote {r.path}"} for r in results]}
    if json_output:
        emit_json(doc)
    else:
        for r in results:
            click.echo(f"node {r.rank}: {r.verdict} (segments {r.segments}) -> {r.path}", err=True)
    sys.exit(0 if doc["verdict"] == "verified" else 1)


@click.command("certify")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--votes", "votes_dir", required=True, type=click.Path(file_okay=False), help="Folder of vote files.")
@click.option("--verifiers", "verifiers_file", required=True, type=click.Path(dir_okay=False),
              help="Trusted verifiers: one hex public key or .pub path per line.")
@click.option("--f", "f", required=True, type=click.IntRange(min=0), help="Byzantine verifiers tolerated (n >= 3f+1).")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Certificate (default RUN/certificate.json).")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def certify_cmd(run_dir: str, votes_dir: str, verifiers_file: str, f: int, out: str | None, json_output: bool) -> None:
    """Write the pipeline certificate of an attested, committed run: per node its key, stages, TEE
    quote (simulated), chain head, weights commitment and the quorum's votes (exit 0 every node
    accepted by the quorum, 1 otherwise, 2 unusable input)."""
    from pol.keys import fingerprint
    from verifier.quorum import load_votes, read_verifiers, tally
    from verifier.report import Report

    from certify.node_votes import NodeRechecker, for_node, node_subject, votes_on
    from certify.pipeline_certificate import CERTIFICATE_FILE, build_body, certificate_digest, write_certificate

    run = Path(run_dir)
    body = build_body(run)
    digest = certificate_digest(body)
    verifiers = read_verifiers(verifiers_file)
    votes, bad = load_votes(votes_dir)
    report = Report(str(run), info={"certificate_digest": digest.hex(), "nodes": []})
    decisions = {}
    for node in body["nodes"]:
        rank = node["rank"]
        rechecker = NodeRechecker(run, rank)
        try:
            result = tally(node_subject(digest, rank), for_node(votes, digest, rank), verifiers, f, rechecker, bad)
        finally:
            rechecker.close()
        decisions[str(rank)] = result.decision
        report.info["nodes"].append(result.to_dict())
        report.add(f"node{rank}.quorum", result.decision == "accepted",
                   f"{result.decision}: {len(result.accepting)}/{result.threshold} valid acceptances, "
                   f"{len(result.confirmed_rejections)} confirmed rejection(s), {len(result.ignored)} ignored",
                   "; ".join(c.detail for c in result.checks() if not c.passed)[:600])
    cert = {**body, "quorum": {"f": f, "verifiers": [v.hex() for v in verifiers],
                               "votes": [sv.to_json() for sv in votes_on(digest, votes)], "decisions": decisions}}
    path = write_certificate(Path(out) if out else run / CERTIFICATE_FILE, cert)
    report.info["certificate"] = str(path)
    report.info["verifiers"] = [fingerprint(v) for v in verifiers]
    if json_output:
        emit_json(report.to_dict())
    else:
        report.render(sys.stderr)
        click.echo(f"wrote {path} (digest {digest.hex()})", err=True)
    sys.exit(report.exit_code)


@click.command("verify-certificate")
@click.argument("certificate", type=click.Path(dir_okay=False))
@click.option("--tee-root", default=None, help="The simulated vendor root to pin: 64 hex digits or a file holding "
              "them (pol tee init's root.pub). Without it the attestation check does not run.")
@click.option("--verifiers", "verifiers_file", default=None, type=click.Path(dir_okay=False),
              help="The verifiers you trust (as for pol quorum certify). Without it the quorum check does not run.")
@click.option("--f", "f", default=None, type=click.IntRange(min=0), help="Byzantine verifiers tolerated (with --verifiers).")
@click.option("--data", "data_spec", default=None, help="module:callable giving the data (custom tasks).")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def verify_certificate_cmd(certificate: str, tee_root: str | None, verifiers_file: str | None, f: int | None,
                           data_spec: str | None, json_output: bool) -> None:
    """Check a pipeline certificate against the node proofs beside it: attestation (simulated),
    weights commitments, signatures, transcript consistency and the quorum, node by node
    (exit 0 verified, 1 a check failed or could not run, 2 unusable input)."""
    from pol.errors import InputError
    from verifier.quorum import read_verifiers

    from certify.certificate_check import check_certificate

    root = None
    if tee_root is not None:
        text = Path(tee_root).read_text("ascii", errors="replace").strip() if Path(tee_root).is_file() else tee_root
        try:
            root = bytes.fromhex(text)
        except ValueError:
            root = b""
        if len(root) != 32:
            raise InputError("--tee-root takes 64 hex digits or a file holding them")
    if (verifiers_file is None) != (f is None):
        raise InputError("--verifiers and --f go together")
    verifiers = read_verifiers(verifiers_file) if verifiers_file else None
    result = check_certificate(certificate, tee_root=root, verifiers=verifiers, f=f, data=data_spec)
    report = result.report()
    if json_output:
        emit_json(report.to_dict())
    else:
        result.render(sys.stderr)
    sys.exit(report.exit_code)
