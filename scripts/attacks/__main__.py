"""``python -m scripts.attacks NAME --victim victim.pol.h5 --key attacker.key --out forged.pol.h5``.

Writes the forgery, then (unless ``--no-verify``) verifies it with the attacker's own public key
trusted, at the verifier's default settings, and prints what was rejected and why.
"""

from __future__ import annotations

import json
import sys

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", required=False)
@click.option("--victim", type=click.Path(dir_okay=False, exists=True), help="The victim's honest proof.")
@click.option("--key", type=click.Path(dir_okay=False, exists=True), help="The attacker's secret key.")
@click.option("--out", type=click.Path(dir_okay=False), help="Forged proof to write.")
@click.option("--seed", default=0, show_default=True, help="Attacker's seed.")
@click.option("--list", "list_only", is_flag=True, help="List the attacks and exit.")
@click.option("--no-verify", is_flag=True, help="Only write the forgery.")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document on stdout.")
def main(name: str | None, victim: str | None, key: str | None, out: str | None, seed: int, list_only: bool,
         no_verify: bool, json_output: bool) -> None:
    """Write a forged proof of the attack NAME (see --list)."""
    from scripts.attacks import ATTACKS, DESCRIPTIONS, load_victim

    if list_only or not name:
        for attack, text in DESCRIPTIONS.items():
            click.echo(f"{attack:<30} {text}")
        return
    if name not in ATTACKS:
        raise click.UsageError(f"unknown attack {name!r}; see --list")
    if not (victim and key and out):
        raise click.UsageError("--victim, --key and --out are required")
    forgery = ATTACKS[name](load_victim(victim), out, key, seed)
    doc: dict = {"attack": name, "proof": str(forgery.path), "expected_checks": sorted(forgery.expected_checks),
                 "extra_files": {k: str(v) for k, v in forgery.extra_files.items()},
                 "info": {k: v for k, v in forgery.info.items() if not isinstance(v, dict)}}
    if not no_verify:
        from pol.keys import load_signing_key
        from scripts.bench_security import judge

        pub = bytes(load_signing_key(key).verify_key).hex()
        verdict, failed, _ = judge(forgery, pub, seed=None)
        doc.update({"verdict": verdict, "failed_checks": sorted(failed),
                    "caught_for_expected_reason": verdict != "verified" and forgery.expected_checks <= failed})
    if json_output:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        for k, v in doc.items():
            click.echo(f"{k}: {v}", err=True)


if __name__ == "__main__":
    sys.exit(main())
