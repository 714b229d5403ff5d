"""``pol keygen`` and ``pol fingerprint``."""

from __future__ import annotations

import click


@click.command("keygen")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Path prefix: writes PREFIX.key (mode 0600) and PREFIX.pub.")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
def keygen(out: str, force: bool) -> None:
    """Create an Ed25519 signing key pair."""
    from pol.keys import fingerprint, generate_keypair, load_verify_key

    secret, public = generate_keypair(out, overwrite=force)
    click.echo(f"wrote {secret} (secret, mode 0600) and {public}", err=True)
    click.echo(fingerprint(load_verify_key(public)))


@click.command("fingerprint")
@click.argument("public_key", type=click.Path(dir_okay=False))
def fingerprint(public_key: str) -> None:
    """Print the fingerprint of a public key file."""
    from pol.keys import fingerprint as fpr
    from pol.keys import load_verify_key

    click.echo(fpr(load_verify_key(public_key)))
