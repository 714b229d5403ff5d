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
    "workers": ("pol.cli.workers:group", "Federated training with untrusted workers, verified by replay."),
    "split": ("pol.cli.split:group", "Split learning: train a pipeline of signed nodes, verify it node by node."),
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


def _fail(message: str, exc: BaseException, argv: list[str] | None, code: int = 2) -> None:
    """One line on stderr; with ``--json`` also the error document (docs/schemas/error.schema.json) on stdout."""
    click.echo(message, err=True)
    if "--json" in (argv if argv is not None else sys.argv[1:]):
        import json

        text = message.removeprefix("pol: ").removeprefix("error: ")
        click.echo(json.dumps({"schema_version": 1, "verdict": "error", "error": text,
                               "error_type": type(exc).__name__, "exit_code": code}))
    sys.exit(code)


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: maps project errors to exit codes and one-line messages.

    Every message that may quote a file is escaped (:func:`pol.terminal.printable`): one line, no
    control characters. Ctrl-C stops the command with one line and exit code 130.
    """
    from pol.errors import Interrupted
    from pol.terminal import printable

    debug = os.environ.get("POL_DEBUG") == "1"
    import warnings

    previous, show_warning = _catch_interrupts(), warnings.showwarning
    _one_line_warnings(debug)
    try:
        rv = cli.main(args=argv, prog_name="pol", standalone_mode=False)
    except Interrupted as exc:
        detail = f": {printable(exc)}" if str(exc) else ""
        click.echo(f"pol: interrupted{detail}", err=True)
        sys.exit(Interrupted.exit_code)
    except click.exceptions.Abort:
        click.echo("pol: aborted", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail(f"pol: error: {printable(exc.format_message())}", exc, argv)
    except InputError as exc:
        if debug:
            raise
        _fail(f"pol: error: {printable(exc)}", exc, argv, exc.exit_code)
    except PolError as exc:
        if debug:
            raise
        _fail(f"pol: error: {printable(exc)}", exc, argv)
    except Exception as exc:  # never a traceback for a user, never exit 0
        if debug:
            raise
        _fail(f"pol: internal error: {type(exc).__name__}: {printable(exc, limit=300)} (POL_DEBUG=1 for a traceback)",
              exc, argv)
    finally:
        _restore_interrupts(previous)
        warnings.showwarning = show_warning
    sys.exit(rv if isinstance(rv, int) else 0)


_OWN_PACKAGES = ("pol", "verifier", "zk", "tee_sim")


def _one_line_warnings(debug: bool) -> None:
    """Warnings of this project print as one escaped line; libraries' warnings (torch, h5py...)
    are not the user's business unless POL_DEBUG=1."""
    import warnings

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        from pol.terminal import printable

        module = os.path.basename(os.path.dirname(filename))
        own = module in _OWN_PACKAGES or os.path.basename(os.path.dirname(os.path.dirname(filename))) in _OWN_PACKAGES
        # numpy's RuntimeWarnings (NaN in a cast...) on hostile values are not news: the checks judge them
        if debug or (own and not issubclass(category, RuntimeWarning)):
            click.echo(f"pol: warning: {printable(message)}", err=True)

    warnings.showwarning = show


def _raise_interrupted(signum: int, frame: Any) -> None:
    from pol.errors import Interrupted

    raise Interrupted()


def _catch_interrupts() -> Any:
    """SIGINT raises :class:`pol.errors.Interrupted` (not KeyboardInterrupt, which click turns into
    an "Aborted!" of exit code 1)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, _raise_interrupted)


def _restore_interrupts(previous: Any) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGINT, previous)
