"""``pol quorum certify``: tally signed votes from n = 3f+1 verifiers (docs/CERTIFY.md)."""

from __future__ import annotations

import sys
from typing import Any

import click

from pol.cli._common import emit_json, json_option


def vote_signing_key(vote_path: str | None, verifier_key: str | None, trusted: str | None, target: str) -> Any:
    """The verifier's own signing key for ``pol verify --vote`` (None without ``--vote``)."""
    from pol.errors import InputError

    if vote_path is None:
        if verifier_key is not None:
            raise InputError("--verifier-key signs a vote: give --vote PATH too")
        return None
    if verifier_key is None:
        raise InputError("--vote needs --verifier-key (your own secret key, pol keygen)")
    if trusted is None:
        raise InputError("--vote needs --key: a vote says whether the proof verifies under a trainer key you trust")
    from pol.weights_io import is_weights_path
    from pol.workers.log import is_workers_log

    if is_weights_path(target) or is_workers_log(target):
        raise InputError("votes are cast on proof files (pol verify PROOF --vote ...), not on weights files "
                         "or coordinator logs")
    from pol.keys import load_signing_key

    return load_signing_key(verifier_key)


@click.group("quorum")
def group() -> None:
    """A Byzantine-tolerant quorum of verifiers: tally signed votes."""


@group.command("certify")
@click.argument("votes", type=click.Path(file_okay=False))
@click.option("--verifiers", "verifiers_path", required=True, type=click.Path(dir_okay=False),
              help="Trusted verifiers: one 64-hex public key or .pub file per line.")
@click.option("--f", "f", type=click.IntRange(min=0), required=True,
              help="Byzantine verifiers tolerated (needs n >= 3f+1 listed verifiers).")
@click.option("--proof", default=None, type=click.Path(dir_okay=False),
              help="The proof voted on: names the subject and lets rejection evidence be re-checked.")
@click.option("--subject", default=None, help="Hex subject digest, when the proof is not at hand (no re-checks).")
@click.option("--data", "data_spec", default=None, help="module:callable giving the data (custom tasks).")
@click.option("--data-kwargs", default=None, help="JSON kwargs for the data builder (default: the plan's).")
@click.option("--model", "model_spec", default=None, help="module:callable building the model (custom tasks).")
@click.option("--loss", "loss_spec", default=None, help="module:callable of a custom loss the plan names.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def certify_cmd(votes: str, verifiers_path: str, f: int, proof: str | None, subject: str | None,
                data_spec: str | None, data_kwargs: str | None, model_spec: str | None, loss_spec: str | None,
                device: str, json_output: bool) -> None:
    """Accept a subject on >= 2f+1 valid verified votes unless checked evidence rejects it
    (exit 0 accepted, 1 rejected or undecided, 2 unusable input)."""
    from pol.errors import InputError
    from verifier.quorum import load_votes, read_verifiers, tally
    from verifier.subject import PROOF_SUBJECT, Subject

    if (proof is None) == (subject is None):
        raise InputError("name the subject: --proof PROOF (re-checks evidence) or --subject HEX")
    keys = read_verifiers(verifiers_path)
    signed, unreadable = load_votes(votes)
    rechecker = None
    if proof is not None:
        from pol.proof_file import ProofReader
        from verifier.evidence import ProofRechecker
        from verifier.subject import proof_subject

        with ProofReader(proof, model_spec=model_spec) as reader:
            the_subject = proof_subject(reader)
        rechecker = ProofRechecker(proof, data=data_spec, model=model_spec, loss=loss_spec, device=device,
                                   data_kwargs=json_option(data_kwargs, "--data-kwargs"))
    else:
        try:
            raw = bytes.fromhex(subject or "")
        except ValueError:
            raise InputError("--subject must be 64 hex digits") from None
        if len(raw) != 32:
            raise InputError("--subject must be 64 hex digits")
        the_subject = Subject(PROOF_SUBJECT, raw)
    try:
        result = tally(the_subject, signed, keys, f, rechecker, unreadable)
    finally:
        if rechecker is not None:
            rechecker.close()
    if json_output:
        emit_json(result.to_dict())
    else:
        render(result)
    sys.exit(result.exit_code)


def render(result: Any) -> None:
    out = sys.stderr
    out.write(f"quorum over {result.subject.describe()}: n={result.n}, f={result.f}, "
              f"{result.threshold} acceptances needed\n")
    for c in result.checks():
        out.write(f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<18}  {c.figure}\n")
        if c.detail and not c.passed:
            out.write(f"        {c.detail}\n")
    for i in result.ignored:
        out.write(f"  ignored {i.source}: {i.reason}\n")
    for who in result.unsupported_rejections:
        out.write(f"  rejection without evidence by {who}: counted neither way\n")
    d = result.detection
    if "claimed" in d:
        out.write(f"  detection (union of {d['union_of_segments_replayed']}/{d['segments_total']} segments replayed): "
                  f"claimed {d['claimed']}, guaranteed {d['guaranteed']}\n")
    out.write(f"verdict: {result.decision.upper()}\n")
