"""``pol export``, ``pol digest``, ``pol ownership`` and ``pol card``: publishing weights."""

from __future__ import annotations

import shlex
import sys

import click

from pol.cli._common import emit_json

_CAST = click.Choice(["bf16", "fp16"])


@click.command("export")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Weights file to write (.safetensors).")
@click.option("--cast", type=_CAST, default=None,
              help="Cast floating-point weights (round-to-nearest-even); verify with --allow-cast.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "json_output", is_flag=True, help="Print a JSON summary on stdout.")
def export_cmd(proof: str, out: str, cast: str | None, force: bool, json_output: bool) -> None:
    """Write a proof's final weights as safetensors naming the proof and its signer."""
    from pol.errors import InputError
    from pol.publish import export_proof
    from pol.weights_io import CAST_RULES

    if not out.lower().endswith(".safetensors"):
        raise InputError(f"--out {out}: exports are safetensors files; use a .safetensors name")
    summary = export_proof(proof, out, cast=CAST_RULES[cast] if cast else None, overwrite=force)
    if json_output:
        emit_json({"schema_version": 1, **summary})
    else:
        click.echo(f"wrote {summary['tensors']} tensors to {out} (proof {summary['pol.proof_digest'][:16]}…, "
                   f"signer {summary['pol.signer_fingerprint']})", err=True)


@click.command("digest")
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option("--allow-pickle", is_flag=True, help="Read .pt/.pth/.bin with torch.load(weights_only=True).")
@click.option("--json", "json_output", is_flag=True, help="Print the overall and per-tensor digests as JSON.")
def digest_cmd(weights: str, allow_pickle: bool, json_output: bool) -> None:
    """Print the manifest digest of a weights file (names, dtypes, shapes, values; not file layout).

    Equals the proof's final_weights_digest (`pol inspect`) for a float32 export.
    """
    from pol.weights_io import load_weights

    wf = load_weights(weights, allow_pickle=allow_pickle)
    digest = wf.digest().hex()
    if not json_output:
        click.echo(digest)
        return
    emit_json({
        "schema_version": 1,
        "file": weights,
        "format": wf.format,
        "digest": digest,
        "algorithm": "sha256 over pol-weights-v1 canonical tensor records (see pol.hashing)",
        "tensors": {name: {"dtype": wf.dtypes[name], "shape": list(wf.tensors[name].shape), "digest": d}
                    for name, d in wf.tensor_digests().items()},
        "ties": wf.ties,
        "metadata": wf.metadata,
    })


@click.command("ownership")
@click.option("--weights", required=True, type=click.Path(dir_okay=False), help="The disputed weights file.")
@click.option("--claim", "claims", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A claimed proof; repeat, each followed by its --key.")
@click.option("--key", "keys", multiple=True, required=True,
              help="The claimant's trusted key (file or fingerprint), in --claim order; '-' for none (self-asserted).")
@click.option("--segments", type=int, default=None, help="Segments to replay per claim (default: ~4%, at least 4).")
@click.option("--seed", type=int, default=None, help="Verifier seed for segment choice (default: OS entropy).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--mode", type=click.Choice(["auto", "exact", "tolerance"]), default="auto", show_default=True)
@click.option("--data", "data_specs", multiple=True,
              help="module:callable giving the data (custom tasks); 'N=module:callable' for claim N only (0-based).")
@click.option("--model", "model_specs", multiple=True,
              help="module:callable building the model (custom tasks); 'N=module:callable' for claim N only.")
@click.option("--allow-cast", type=_CAST, default=None, help="Accept the proofs' float weights cast to this dtype.")
@click.option("--allow-pickle", is_flag=True, help="Read .pt/.pth/.bin with torch.load(weights_only=True).")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def ownership_cmd(weights: str, claims: tuple[str, ...], keys: tuple[str, ...], segments: int | None,
                  seed: int | None, device: str, mode: str, data_specs: tuple[str, ...], model_specs: tuple[str, ...],
                  allow_cast: str | None, allow_pickle: bool, json_output: bool) -> None:
    """Decide which claimed proofs explain WEIGHTS (exit 0 explained, 1 none or conflict, 2 bad input)."""
    import json

    from pol.errors import InputError
    from verifier.api import VerifyOptions
    from verifier.ownership import Claim, resolve_ownership

    if len(claims) != len(keys):
        raise InputError(f"{len(claims)} --claim but {len(keys)} --key: give one --key per --claim ('-' for none)")
    models, datas = _per_claim(model_specs, len(claims), "--model"), _per_claim(data_specs, len(claims), "--data")
    pairs = [Claim(p, None if k == "-" else k, models[i], datas[i]) for i, (p, k) in enumerate(zip(claims, keys))]
    opts = VerifyOptions(segments=segments, seed=seed, device=device, mode=mode)
    result = resolve_ownership(weights, pairs, options=opts, allow_cast=allow_cast, allow_pickle=allow_pickle)
    if json_output:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        result.render(sys.stderr)
    sys.exit(result.exit_code)


def _per_claim(specs: tuple[str, ...], count: int, flag: str) -> list[str | None]:
    """``spec`` for every claim, or ``N=spec`` for claim N; later values override earlier ones."""
    import re

    from pol.errors import InputError

    out: list[str | None] = [None] * count
    for spec in specs:
        match = re.fullmatch(r"(\d+)=(.+)", spec)
        if match is None:
            out = [spec] * count
            continue
        i = int(match.group(1))
        if i >= count:
            raise InputError(f"{flag} {spec}: there are only {count} claims (numbered from 0)")
        out[i] = match.group(2)
    return out


def card_text(proof: str, weights_name: str = "model.safetensors") -> str:
    from pol.keys import fingerprint
    from pol.proof_file import ProofReader
    from pol.publish import proof_metadata
    from pol.tasks import TASKS
    from pol.terminal import printable

    with ProofReader(proof) as reader:
        meta = proof_metadata(reader)
        plan = reader.plan
        fpr = meta["pol.signer_fingerprint"]
        assert fingerprint(reader.signer_public_key) == fpr
        command = ["pol", "verify", weights_name, "--proof", proof, "--key", fpr]
        # Never a spec read from the proof: the reader names code it trusts (placeholders).
        if plan.model.get("spec") not in TASKS:
            command += ["--model", "YOUR_MODULE:MODEL_BUILDER"]
        if plan.data.get("spec") not in TASKS:
            command += ["--data", "YOUR_MODULE:DATA_BUILDER"]
        cmd = printable(" ".join(shlex.quote(str(c)) for c in command))
        data = plan.data
        lines = [
            "---",
            "proof_of_learning:",
            "  format: proof-of-learning v1",
            f"  proof_digest: \"{meta['pol.proof_digest']}\"",
            f"  plan_digest: \"{meta['pol.plan_digest']}\"",
            f"  chain_head: \"{meta['pol.chain_head']}\"",
            f"  final_weights_digest: \"{meta['pol.final_weights_digest']}\"",
            f"  signer_fingerprint: \"{fpr}\"",
            "  data_commitment:",
            "    scheme: merkle-sha256 over ordered sample digests",
            f"    merkle_root: \"{data['merkle_root']}\"",
            f"    num_samples: {int(data['num_samples'])}",
            f"    spec: \"{printable(data.get('spec')).replace(chr(34), chr(39))}\"",
            f"  training: {{steps: {plan.num_steps}, checkpoint_every: {plan.every}, batch_size: {plan.batch_size}, "
            f"seed: {plan.seed}, nonce: \"{plan.nonce}\"}}",
            f"  plan_signed_at: \"{printable(plan.created_at).replace(chr(34), chr(39))}\"",
            f"  verify: \"{cmd.replace(chr(34), chr(39))}\"",
            "---",
            "",
            "## Proof of learning",
            "",
            f"These weights come with a signed proof-of-learning (`{printable(proof)}`): a training plan signed before the "
            f"first step, {plan.num_checkpoints} hash-chained checkpoints over {plan.num_steps} steps, and a "
            "signature over the chain head and the final weights.",
            "",
            f"- Signer fingerprint: `{fpr}`",
            f"- Proof digest (plan digest : chain head): `{meta['pol.proof_digest']}`",
            f"- Final weights digest (`pol digest {weights_name}`): `{meta['pol.final_weights_digest']}`",
            f"- Training data commitment (Merkle root over {int(data['num_samples'])} ordered samples): "
            f"`{data['merkle_root']}`",
            "",
            "Verify (exit code 0 only when the weights match and the training replays):",
            "",
            "```sh",
            cmd,
            "```",
            "",
            "Check that the fingerprint above is the publisher's through a channel you trust; a proof checked "
            "without `--key` is only self-asserted.",
        ]
    return "\n".join(lines) + "\n"


@click.command("card")
@click.option("--proof", required=True, type=click.Path(dir_okay=False), help="The proof file.")
@click.option("--weights", "weights_name", default="model.safetensors", show_default=True,
              help="The weights file name to use in the verify command.")
def card_cmd(proof: str, weights_name: str) -> None:
    """Print a model-card snippet (YAML front matter and markdown) naming the proof."""
    click.echo(card_text(proof, weights_name), nl=False)
