"""``pol zk``: commit to checkpoints, prove ownership, open chunks, verify.

Exit codes: 0 every check passed, 1 a check failed, 2 the input could not be judged.
Heavy imports (numpy, h5py, the curve backends) happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

_BACKENDS = click.Choice(["auto", "pyecc", "arkworks"])


def _backend(name: str | None) -> Any:
    from zk.backend import get_backend

    return get_backend(None if name in (None, "auto") else name)


def _challenge(text: str) -> bytes:
    from zk.errors import ZkFormatError

    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ZkFormatError("--challenge must be hex") from None
    if not 16 <= len(raw) <= 1024:
        raise ZkFormatError("--challenge must be 16..1024 bytes (32 random bytes recommended)")
    return raw


def _has_zk(path: str) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "zk" in f
    except OSError:
        return False  # the proof reader reports the real problem


@click.group(name="zk")
def group() -> None:
    """Zero-knowledge commitments to checkpoints (Pedersen over BLS12-381).

    \b
    pol zk commit run.pol.h5 --key trainer.key          # adds a signed /zk section
    pol zk prove-ownership run.pol.h5 --secrets run.zk-secrets.h5 --checkpoint 3 \\
        --challenge <hex from the verifier> --out own.zkp
    pol zk verify run.pol.h5 --ownership own.zkp --challenge <hex> --key trainer.pub
    """


@group.command("commit")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--key", required=True, type=click.Path(dir_okay=False), help="Trainer's secret key (pol keygen).")
@click.option("--secrets-out", type=click.Path(dir_okay=False), default=None,
              help="Where the blindings go (default: <proof>.zk-secrets.h5). Keep it private.")
@click.option("--chunk-size", default=4096, show_default=True, help="Values per chunk (= generators).")
@click.option("--scale-bits", default=12, show_default=True, help="Fixed-point scale 2^-N.")
@click.option("--bits", default=16, show_default=True, help="Signed bit width of a committed value.")
@click.option("--backend", type=_BACKENDS, default=None, help="Curve backend (default: $POL_ZK_BACKEND or auto).")
@click.option("--force", is_flag=True, help="Replace an existing /zk section and secrets file.")
@click.option("--json", "json_output", is_flag=True, help="Print a JSON summary on stdout.")
def commit(proof: str, key: str, secrets_out: str | None, chunk_size: int, scale_bits: int, bits: int,
           backend: str | None, force: bool, json_output: bool) -> None:
    """Commit to every stored checkpoint's model weights and sign the /zk section."""
    import json
    import time

    from pol.keys import load_signing_key
    from zk.errors import ZkFormatError
    from zk.link import build_section, write_secrets, write_section
    from zk.pedersen import Params

    try:
        params = Params(chunk_size, scale_bits, bits)
    except ValueError as exc:
        raise ZkFormatError(str(exc)) from None
    sk = load_signing_key(key)
    out = Path(secrets_out) if secrets_out else Path(proof).with_name(Path(proof).name.removesuffix(".h5")
                                                                     .removesuffix(".pol") + ".zk-secrets.h5")
    if out.exists() and not force:
        raise ZkFormatError(f"{out} exists; refusing to overwrite secrets (use --force)")
    be = _backend(backend)
    started = time.perf_counter()
    from zk.link import open_reader

    if not force and _has_zk(proof):  # refuse before any work or any secrets are written
        raise ZkFormatError(f"{proof} already has a /zk section (use --force to replace it)")
    with open_reader(proof) as reader:
        section, secrets_ = build_section(reader, sk, params=params, backend=be)
    write_secrets(out, secrets_, overwrite=force)
    write_section(proof, section, overwrite=force)
    elapsed = time.perf_counter() - started
    summary = {
        "schema_version": 1,
        "proof": proof,
        "secrets": str(out),
        "checkpoints": section.checkpoints,
        "values_per_checkpoint": section.length,
        "chunks_per_checkpoint": len(section.commitments[0].chunks),
        "clipped": section.clipped,
        "backend": be.name,
        "seconds": round(elapsed, 3),
    }
    if json_output:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"committed {len(section.checkpoints)} checkpoints x {section.length} values "
                   f"({summary['chunks_per_checkpoint']} chunks) with {be.name} in {elapsed:.2f}s")
        click.echo(f"secrets (keep private): {out}", err=True)


@group.command("prove-ownership")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--secrets", "secrets_path", required=True, type=click.Path(dir_okay=False))
@click.option("--checkpoint", required=True, type=int)
@click.option("--challenge", required=True, help="Hex challenge chosen by the verifier (fresh, random).")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--backend", type=_BACKENDS, default=None)
def prove_ownership_cmd(proof: str, secrets_path: str, checkpoint: int, challenge: str, out: str,
                        backend: str | None) -> None:
    """Prove knowledge of checkpoint N's committed weights, bound to a verifier challenge."""
    from zk.link import prove_ownership, read_secrets

    ch = _challenge(challenge)
    own = prove_ownership(proof, read_secrets(secrets_path), checkpoint, ch, backend=_backend(backend))
    data = own.to_bytes()
    Path(out).write_bytes(data)
    click.echo(f"wrote {out} ({len(data)} bytes) for checkpoint {checkpoint}")


@group.command("open")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--secrets", "secrets_path", required=True, type=click.Path(dir_okay=False))
@click.option("--checkpoint", required=True, type=int)
@click.option("--chunk", "chunks", required=True, multiple=True, type=int, help="Chunk index (repeatable).")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def open_cmd(proof: str, secrets_path: str, checkpoint: int, chunks: tuple[int, ...], out: str) -> None:
    """Reveal the chunks a verifier sampled (values, blinding, Merkle path) as JSON."""
    import json

    from zk.link import open_chunks, read_secrets

    doc = open_chunks(proof, read_secrets(secrets_path), checkpoint, list(chunks))
    Path(out).write_text(json.dumps(doc))
    click.echo(f"wrote {out}: {len(chunks)} chunk(s) of checkpoint {checkpoint}")


def _read_capped(path: str, what: str) -> bytes:
    from zk.errors import ZkFormatError
    from zk.link import MAX_EVIDENCE_BYTES

    from pol.smallfiles import read_small_file

    return read_small_file(path, MAX_EVIDENCE_BYTES, what, ZkFormatError)


@group.command("verify")
@click.argument("proof", type=click.Path(dir_okay=False))
@click.option("--ownership", type=click.Path(dir_okay=False), default=None, help="Ownership proof (.zkp).")
@click.option("--challenge", default=None, help="The hex challenge you gave the prover (with --ownership).")
@click.option("--opening", type=click.Path(dir_okay=False), default=None, help="Chunk openings (pol zk open).")
@click.option("--key", default=None, help="Trusted public key file or fingerprint (without it: self-asserted, exit 1).")
@click.option("--scale-bits", default=None, type=int, help="Pinned fixed-point scale (default 12).")
@click.option("--bits", default=None, type=int, help="Pinned signed bit width (default 16).")
@click.option("--max-chunk-size", default=None, type=int, help="Largest accepted chunk size (default 4096).")
@click.option("--max-clipped", default=None, type=int, help="Values a checkpoint may clip (default 0).")
@click.option("--sample", default=None, type=click.IntRange(min=1),
              help="Check the binding of this many stored checkpoints, chosen at random (default: all).")
@click.option("--seed", default=None, type=int, help="Seed of that choice (default: OS entropy).")
@click.option("--backend", type=_BACKENDS, default=None)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def verify_cmd(proof: str, ownership: str | None, challenge: str | None, opening: str | None, key: str | None,
               scale_bits: int | None, bits: int | None, max_chunk_size: int | None, max_clipped: int | None,
               sample: int | None, seed: int | None, backend: str | None, json_output: bool) -> None:
    """Check the /zk section against the proof's checkpoints (and an ownership proof or chunk openings).

    Exit 0 only when every check passed under a trusted key; 1 when a check failed, the signer
    is only self-asserted (no --key), or a result is unbound (the file lacks the committed weights).
    """
    from pol.terminal import printable

    import dataclasses
    import json

    from zk.errors import ZkFormatError
    from zk.policy import ZkPolicy
    from zk.verify import verify_zk_section

    own = None
    if ownership is not None:
        if challenge is None:
            raise ZkFormatError("--ownership needs --challenge (the challenge you gave the prover)")
        own = (_read_capped(ownership, "ownership proof"), _challenge(challenge))
    elif challenge is not None:
        raise ZkFormatError("--challenge is only meaningful with --ownership")
    doc = None
    if opening is not None:
        try:
            from pol.smallfiles import parse_json

            doc = parse_json(_read_capped(opening, "openings"), "openings", ValueError)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
            raise ZkFormatError(f"cannot read openings {opening}: {exc}") from None
    pinned = {k: v for k, v in (("scale_bits", scale_bits), ("bits", bits), ("max_chunk_size", max_chunk_size),
                                ("max_clipped", max_clipped)) if v is not None}
    try:
        policy = dataclasses.replace(ZkPolicy(), **pinned)
    except ValueError as exc:
        raise ZkFormatError(f"zk policy: {exc}") from None
    trusted = None
    if key is not None:
        from pol.keys import resolve_trusted_key

        trusted = resolve_trusted_key(key)
    result = verify_zk_section(proof, trusted, policy=policy, backend=_backend(backend), ownership=own,
                               openings=doc, sample=sample, seed=seed)
    if json_output:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        marks = {True: "PASS", False: "FAIL", None: "INFO"}
        for c in result.checks:
            click.echo(printable(f"{marks[c['passed']]}  {c['name']:<18} {c['figure']:<28} {c['detail']}"), err=True)
        click.echo(f"verdict: {result.verdict.upper()}", err=True)
    if result.exit_code:
        raise click.exceptions.Exit(result.exit_code)
