"""``pol challenge`` and ``pol respond``: the interactive (and non-interactive) compact-proof flow."""

from __future__ import annotations

import click

from pol.cli._common import emit_json


@click.command("challenge")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Challenge file to write (JSON).")
@click.option("--segments", type=int, default=None, help="Segments to challenge (default: ~4%, at least 4).")
@click.option("--seed", type=int, default=None, help="Reproducible challenge (default: OS entropy).")
def challenge_cmd(proof: str, out: str, segments: int | None, seed: int | None) -> None:
    """Verifier: draw segments with your own randomness and write a challenge for the prover."""
    from pol.proof_file import ProofReader
    from verifier.challenge import make_challenge, save_challenge
    from verifier.sampling import default_segment_count

    with ProofReader(proof) as reader:
        n = reader.num_checkpoints - 1
        doc = make_challenge(reader, segments or default_segment_count(n), seed)
    save_challenge(doc, out)
    click.echo(f"challenged segments {doc['segments']} of {n}; send {out} to the prover", err=True)


@click.command("respond")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--challenge", "challenge_path", type=click.Path(dir_okay=False), default=None,
              help="Challenge file from the verifier (interactive flow).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Response file to write.")
@click.option("--non-interactive", "count", type=int, default=None,
              help="Embed a response to COUNT segments derived from the chain head (Fiat-Shamir).")
@click.option("--data", "data_spec", default=None, help="module:callable for custom data.")
@click.option("--model", "model_spec", default=None, help="module:callable for a custom model.")
@click.option("--json", "json_output", is_flag=True)
def respond_cmd(proof: str, challenge_path: str | None, out: str | None, count: int | None,
                data_spec: str | None, model_spec: str | None, json_output: bool) -> None:
    """Prover: regenerate challenged checkpoints by exact replay from anchors."""
    from pol.errors import InputError
    from pol.proof_file import ProofReader
    from pol.tasks import load_data, resolve_spec
    from verifier.api import _auto_device, choose_mode
    from verifier.challenge import (
        embed_response,
        needed_checkpoints,
        read_challenge,
        regenerate,
        response_segments,
        write_response,
    )
    from verifier.replay import Replayer

    if (challenge_path is None) == (count is None):
        raise InputError("give either --challenge FILE --out FILE, or --non-interactive COUNT")

    def states_for(reader: ProofReader, wanted: list[int]) -> dict:
        plan = reader.plan
        recorded = plan.environment.get("device_type", "cpu")
        device = _auto_device(reader, "auto")
        if device != recorded:
            raise InputError(f"the proof was recorded on {recorded} and this machine has no {recorded}: "
                             "answer the challenge on the recorded stack (exact replay)")
        choose_mode(reader, device, "exact")  # pins the recorded thread count, as the verifier does
        data = load_data(resolve_spec(plan.data.get("spec"), data_spec, "data"), plan.data.get("kwargs") or {})
        replayer = Replayer(plan, data.train, device, resolve_spec(plan.model.get("spec"), model_spec, "model"))
        return regenerate(reader, replayer, wanted)

    if count is not None:
        segments = embed_response(proof, count, states_for, model_spec)
        summary = {"mode": "non-interactive", "segments": segments, "proof": proof}
    else:
        if out is None:
            raise InputError("--out is required with --challenge")
        doc = read_challenge(challenge_path)  # type: ignore[arg-type]
        with ProofReader(proof, model_spec=model_spec) as reader:
            states = states_for(reader, needed_checkpoints(reader, doc["segments"]))
            write_response(out, reader, doc, states)
            segments = response_segments(out, reader)
        summary = {"mode": "interactive", "segments": segments, "response": out, "checkpoints": sorted(states)}
    if json_output:
        emit_json(summary)
    else:
        click.echo(f"answered segments {summary['segments']} ({summary['mode']})", err=True)
