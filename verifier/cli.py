"""``pol verify``: verify a proof, or published weights against a proof."""

from __future__ import annotations

import sys

import click

from pol.cli._common import ProgressFactory, progress_enabled


@click.command("verify")
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--key", "key", default=None,
              help="Trusted signer: a public key file or a 40-hex-digit fingerprint. Without it the "
                   "proof is only self-asserted and the verdict cannot be 'verified'.")
@click.option("--proof", default=None, type=click.Path(dir_okay=False),
              help="Proof file, when TARGET is a weights file (.safetensors).")
@click.option("--response", default=None, type=click.Path(dir_okay=False),
              help="Prover's response to your challenge (compact proofs, interactive flow); needs --challenge.")
@click.option("--challenge", default=None, type=click.Path(dir_okay=False),
              help="The challenge file you issued with 'pol challenge'; the response must answer exactly it.")
@click.option("--segments", type=click.IntRange(min=0), default=None,
              help="Uniform segments to replay (default: ~4%, at least 4), besides the targeted ones.")
@click.option("--steps", "step_count", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also replay this many single steps drawn with your randomness (start states regenerated here).")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="With --forged-fraction: draw enough segments to catch that forged fraction with this probability.")
@click.option("--forged-fraction", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Forged fraction of segments the --confidence guarantee is about (e.g. 0.1).")
@click.option("--top-updates", type=click.IntRange(min=0), default=2, show_default=True,
              help="Targeted replay: the segments with the largest updates by each figure (0: uniform draw only).")
@click.option("--use-embedded-response", is_flag=True,
              help="Let the prover's embedded Fiat-Shamir response choose the segments (can be ground; see SECURITY.md).")
@click.option("--seed", type=int, default=None, help="Verifier seed for segment choice (default: OS entropy).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--mode", type=click.Choice(["auto", "exact", "tolerance"]), default="auto", show_default=True,
              help="auto: bitwise when the recorded environment matches, else calibrated tolerance.")
@click.option("--max-distance", type=click.FloatRange(0, min_open=True), default=None,
              help="Tolerance mode: max relative distance.")
@click.option("--min-progress", type=click.FloatRange(0), default=None, help="Tolerance mode: minimum-progress ratio.")
@click.option("--data", "data_spec", default=None, help="module:callable giving the data (custom tasks).")
@click.option("--data-kwargs", default=None, help="JSON kwargs for the data builder (default: the plan's).")
@click.option("--model", "model_spec", default=None, help="module:callable building the model (custom tasks).")
@click.option("--model-kwargs", default=None, help="JSON kwargs for the model (must equal the plan's).")
@click.option("--loss", "loss_spec", default=None, help="module:callable of a custom loss the plan names.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Parallel replay processes.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for replay (default: the recorded count, which allows bitwise replay).")
@click.option("--allow-cast", type=click.Choice(["bf16", "fp16"]), default=None,
              help="Weights file: accept the proof's float weights cast to this dtype (named in the report).")
@click.option("--allow-pickle", is_flag=True,
              help="Weights file: read .pt/.pth/.bin with torch.load(weights_only=True) instead of refusing.")
@click.option("--vote", "vote_path", default=None, type=click.Path(dir_okay=False),
              help="Also write a signed vote on this proof (pol quorum; needs --key and --verifier-key).")
@click.option("--verifier-key", default=None, type=click.Path(dir_okay=False),
              help="Your own Ed25519 secret key (pol keygen) that signs the --vote.")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def verify_cmd(target: str, key: str | None, proof: str | None, response: str | None, challenge: str | None,
               segments: int | None, step_count: int, confidence: float | None, forged_fraction: float | None,
               top_updates: int,
               use_embedded_response: bool, seed: int | None,
               device: str, mode: str, max_distance: float | None, min_progress: float | None,
               data_spec: str | None, data_kwargs: str | None, model_spec: str | None, model_kwargs: str | None,
               loss_spec: str | None, workers: int, threads: int | None,
               allow_cast: str | None, allow_pickle: bool, vote_path: str | None, verifier_key: str | None,
               json_output: bool) -> None:
    """Verify a proof file (exit 0 verified, 1 rejected, 2 could not verify)."""
    from verifier.cli_quorum import vote_signing_key

    signing_key = vote_signing_key(vote_path, verifier_key, key, target)
    from pol.cli._common import json_option
    from verifier.api import VerifyOptions, verify
    from verifier.tolerance import Tolerance

    tol = Tolerance()
    tol = Tolerance(max_distance if max_distance is not None else tol.max_distance,
                    min_progress if min_progress is not None else tol.min_progress)
    opts = VerifyOptions(segments=segments, steps=step_count, confidence=confidence, forged_fraction=forged_fraction,
                         seed=seed,
                         device=device, mode=mode, data=data_spec, model=model_spec, loss=loss_spec,
                         data_kwargs=json_option(data_kwargs, "--data-kwargs"),
                         model_kwargs=json_option(model_kwargs, "--model-kwargs"),
                         tolerance=tol, workers=workers, threads=threads, top_updates=top_updates,
                         calibrate=max_distance is None, use_embedded_response=use_embedded_response)
    from pol.weights_io import is_weights_path

    from pol.workers.log import is_workers_log

    with ProgressFactory(progress_enabled(json_output)) as bars:
        if proof is None and not is_weights_path(target) and is_workers_log(target):  # a federated coordinator's log
            from verifier.workers import WorkersVerifyOptions, verify_log

            report = verify_log(target, public_key=key, progress=bars, options=WorkersVerifyOptions(
                replays=segments, seed=seed, device=device, data=data_spec, model=model_spec))
        elif is_weights_path(target):
            from verifier.published import verify_published

            report = verify_published(target, proof, public_key=key, options=opts, allow_cast=allow_cast,
                                      allow_pickle=allow_pickle, progress=bars)
        else:
            report = verify(proof or target, public_key=key, options=opts, progress=bars, response=response,
                            challenge=challenge)
    if signing_key is not None:
        from verifier.vote import cast_vote

        signed = cast_vote(target, report, signing_key, vote_path,  # type: ignore[arg-type]
                           data=data_spec, model=model_spec, loss=loss_spec, device=device,
                           data_kwargs=opts.data_kwargs)
        report.info["vote"] = {"path": vote_path, "verdict": signed.vote.verdict,
                               "evidence": [e.describe() for e in signed.vote.evidence]}
    if json_output:
        click.echo(report.to_json())
    else:
        report.render(sys.stderr)
    sys.exit(report.exit_code)
