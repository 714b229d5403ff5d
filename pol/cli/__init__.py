"""The ``pol`` command line.

Subcommands are registered by dotted path and imported only when invoked, so ``pol --help``
stays instant (no torch import). Exit codes: 0 verified / success, 1 a check failed,
2 the input could not be judged (one-line error, no traceback; set ``POL_DEBUG=1`` for one).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from pol.errors import InputError, PolError

# name -> "module:attribute". Each package owns its own command module.
_COMMANDS: dict[str, tuple[str, str]] = {
    "keygen": ("pol.cli.keys:keygen", "Create an Ed25519 signing key pair."),
    "fingerprint": ("pol.cli.keys:fingerprint", "Print the fingerprint of a public key file."),
    "train": ("pol.cli.train:train", "Train a built-in task while recording a proof."),
    "inspect": ("pol.cli.inspect:inspect_cmd", "Summarise a proof file."),
    "verify": ("verifier.cli:verify_cmd", "Verify a proof (or published weights against one)."),
    "export": ("pol.cli.publish:export_cmd", "Write a proof's final weights as safetensors naming the proof."),
    "digest": ("pol.cli.publish:digest_cmd", "Print the per-tensor manifest digest of a weights file."),
    "ownership": ("pol.cli.publish:ownership_cmd", "Decide which claimed proofs explain published weights."),
    "card": ("pol.cli.publish:card_cmd", "Print a model-card snippet naming a proof."),
    "challenge": ("verifier.cli_challenge:challenge_cmd", "Verifier: challenge segments of a compact proof."),
    "respond": ("verifier.cli_challenge:respond_cmd", "Prover: answer a challenge by exact replay from anchors."),
    "quorum": ("verifier.cli_quorum:group", "Tally signed verifier votes (n = 3f+1, checked rejection evidence)."),
    "dispute": ("verifier.cli_dispute:group", "Bisect a disputed segment to one step; write and referee fraud proofs."),
    "zk": ("zk.cli:group", "Zero-knowledge commitments to checkpoints."),
    "tee": ("tee_sim.cli:group", "Simulated TEE attestation."),
    "import-legacy": ("pol.cli.legacy:import_legacy", "Convert a reference-implementation (Jia et al.) proof directory."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        target, _ = _COMMANDS[name]
        module_name, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:  # a command not yet built or broken install
            raise click.ClickException(f"command {name!r} is unavailable: {exc}") from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="proof-of-learning", prog_name="pol")
def cli() -> None:
    """proof-of-learning: record, sign and verify proofs of training.

    \b
    Exit codes: 0 verified, 1 a check failed, 2 the input could not be judged.
    """


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: maps project errors to exit codes and one-line messages."""
    debug = os.environ.get("POL_DEBUG") == "1"
    try:
        rv = cli.main(args=argv, prog_name="pol", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("pol: aborted", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except InputError as exc:
        if debug:
            raise
        click.echo(f"pol: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except PolError as exc:
        if debug:
            raise
        click.echo(f"pol: error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # never a traceback for a user, never exit 0
        if debug:
            raise
        click.echo(f"pol: internal error: {type(exc).__name__}: {exc} (POL_DEBUG=1 for a traceback)", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)
