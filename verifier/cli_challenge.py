"""``pol challenge`` and ``pol respond``: the interactive (and non-interactive) challenge flow."""

from __future__ import annotations

import click

from pol.cli._common import emit_json


@click.command("challenge")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Challenge file to write (JSON).")
@click.option("--segments", type=click.IntRange(min=0), default=None,
              help="Uniform segments to challenge (default: ~4%, at least 4; 0 with --steps for steps only).")
@click.option("--steps", type=click.IntRange(min=0), default=None,
              help="Single steps to challenge (proofs with per-step digests).")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="With --forged-fraction: challenge enough single steps (or segments) for this detection probability.")
@click.option("--forged-fraction", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="The forged fraction of steps (or segments) the guarantee is about.")
@click.option("--top-updates", type=click.IntRange(min=0), default=2, show_default=True,
              help="Also challenge the segments with the largest updates by each figure (verifier.sampling).")
@click.option("--seed", type=int, default=None, help="Reproducible challenge (default: OS entropy).")
@click.option("--model", "model_spec", default=None, help="module:callable for a custom model (compact proofs).")
@click.option("--json", "json_output", is_flag=True, help="Print a JSON summary on stdout.")
def challenge_cmd(proof: str, out: str, segments: int | None, steps: int | None, confidence: float | None,
                  forged_fraction: float | None, top_updates: int, seed: int | None, model_spec: str | None,
                  json_output: bool) -> None:
    """Verifier: draw segments and steps with your own randomness and write a challenge for the prover."""
    from pol.errors import InputError
    from pol.proof_file import ProofReader
    from verifier.api import _last_stretch
    from verifier.challenge import make_challenge, save_challenge
    from verifier.sampling import default_segment_count, samples_for, targeted_segments
    from verifier.scan import scan_checkpoints

    if (confidence is None) != (forged_fraction is None):
        raise InputError("--confidence and --forged-fraction go together")
    with ProofReader(proof, model_spec=model_spec) as reader:
        n, total = reader.num_checkpoints - 1, reader.plan.num_steps
        per_step = reader.step_state_digests is not None
        if confidence is not None and forged_fraction is not None:
            if per_step and steps is None:
                steps = samples_for(total, confidence, forged_fraction)
                segments = 0 if segments is None else segments
            elif segments is None:
                segments = samples_for(n, confidence, forged_fraction)
        if segments is None:
            segments = 0 if steps else default_segment_count(n)
        targeted = targeted_segments(scan_checkpoints(reader), n, top_updates,
                                     _last_stretch(reader) if reader.mode == "compact" else None).segments
        doc = make_challenge(reader, segments, steps or 0, seed, targeted)
    save_challenge(doc, out)
    summary = {"challenge": out, "segments": doc["segments"], "steps": doc["steps"], "segments_total": n,
               "steps_total": total, "targeted_segments": targeted}
    if json_output:
        emit_json(summary)
    else:
        click.echo(f"challenged {len(doc['segments'])} of {n} segments and {len(doc['steps'])} of {total} steps; "
                   f"send {out} to the prover", err=True)


@click.command("respond")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--challenge", "challenge_path", type=click.Path(dir_okay=False), default=None,
              help="Challenge file from the verifier (interactive flow).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Response file to write.")
@click.option("--non-interactive", "count", type=click.IntRange(min=1), default=None,
              help="Embed a response to COUNT segments derived from the chain head (Fiat-Shamir; can be ground).")
@click.option("--non-interactive-steps", "step_count", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --non-interactive: also answer this many single steps.")
@click.option("--data", "data_spec", default=None, help="module:callable for custom data.")
@click.option("--model", "model_spec", default=None, help="module:callable for a custom model.")
@click.option("--loss", "loss_spec", default=None, help="module:callable for a custom loss.")
@click.option("--json", "json_output", is_flag=True)
def respond_cmd(proof: str, challenge_path: str | None, out: str | None, count: int | None, step_count: int,
                data_spec: str | None, model_spec: str | None, loss_spec: str | None, json_output: bool) -> None:
    """Prover: regenerate the challenged start states by exact replay from stored checkpoints."""
    from pol.envinfo import apply_in_process
    from pol.errors import InputError
    from pol.proof_file import ProofReader
    from pol.tasks import load_data, resolve_spec
    from verifier.api import VerifyOptions, _auto_device, decide_mode
    from verifier.challenge import (
        challenged_units,
        embed_response,
        needed_checkpoints,
        needed_steps,
        read_challenge,
        regenerate,
        write_response,
    )
    from verifier.replay import Replayer
    from verifier.segments import RegenerationError

    if (challenge_path is None) == (count is None):
        raise InputError("give either --challenge FILE --out FILE, or --non-interactive COUNT")

    def states_for(reader: ProofReader, wanted: list[int]) -> dict:
        plan = reader.plan
        device = _auto_device(reader, "auto")
        _, rep = decide_mode(reader, device, VerifyOptions(mode="exact"))  # the recorded stack, as the verifier
        if rep.needs_subprocess:
            raise InputError("answer the challenge on the recorded stack: this machine needs " +
                             ", ".join(f"{k}={v}" for k, v in rep.env.items()) + " set before starting pol")
        apply_in_process(rep)
        data = load_data(resolve_spec(plan.data.get("spec"), data_spec, "data"), plan.data.get("kwargs") or {})
        replayer = Replayer(plan, data.train, device, resolve_spec(plan.model.get("spec"), model_spec, "model"),
                            loss_spec)
        try:
            return regenerate(reader, replayer, wanted)
        except RegenerationError as exc:
            raise InputError(f"cannot answer the challenge on this stack: {exc}") from None

    if count is not None:
        segments, steps = embed_response(proof, count, step_count, states_for, model_spec)
        summary = {"mode": "non-interactive", "segments": segments, "steps": steps, "proof": proof}
    else:
        if out is None:
            raise InputError("--out is required with --challenge")
        doc = read_challenge(challenge_path)  # type: ignore[arg-type]
        with ProofReader(proof, model_spec=model_spec) as reader:
            segs = needed_checkpoints(reader, challenged_units(doc, reader)[0])
            step_list = needed_steps(reader, challenged_units(doc, reader)[1])
            wanted = sorted({int(reader.checkpoint_steps[i]) for i in segs} | set(step_list))
            by_step = states_for(reader, wanted)
            write_response(out, reader, doc, {i: by_step[int(reader.checkpoint_steps[i])] for i in segs},
                           {t: by_step[t] for t in step_list})
        summary = {"mode": "interactive", "segments": doc["segments"], "steps": doc.get("steps", []),
                   "response": out, "states": len(wanted)}
    if json_output:
        emit_json(summary)
    else:
        click.echo(f"answered {len(summary['segments'])} segment(s) and {len(summary['steps'])} step(s) "
                   f"({summary['mode']})", err=True)
