"""``pol tee``: a simulated TEE on the command line.

A state directory (``--state``, default ``$POL_TEE_STATE`` or ``./.pol-tee``) holds the
simulated vendor and platform, the current collateral, the verifier's pinned ``root.pub``, a
default ``policy.json``, and the verifier's nonce registry ``nonces.json`` (so a nonce is
single-use across invocations). Typical flow::

    pol tee init                                   # vendor, platform, collateral, policy.json
    N=$(pol tee nonce)                             # verifier: a fresh 256-bit nonce
    pol tee attest data.txt --nonce $N --out ev/   # enclave: output + quote + collateral
    pol tee verify ev/quote.bin --policy .pol-tee/policy.json --nonce $N [--json]

Exit codes: 0 accepted, 1 rejected, 2 malformed input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

_STATE_HELP = "State directory (default: $POL_TEE_STATE or ./.pol-tee)."


def _state_dir(state: str | None) -> Path:
    return Path(state or os.environ.get("POL_TEE_STATE") or ".pol-tee")


def _state_option(fn: Any) -> Any:
    return click.option("--state", "state", type=click.Path(file_okay=False), default=None, help=_STATE_HELP)(fn)


def _read_state(path: Path, what: str) -> bytes:
    from tee_sim.errors import StateError

    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StateError(f"{what} not found at {path}; run `pol tee init --state {path.parent}` first") from None
    except OSError as exc:
        raise StateError(f"cannot read {what} at {path}: {exc.strerror or exc}") from None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _parse_config(text: str | None, default: dict[str, Any]) -> dict[str, Any]:
    if text is None:
        return dict(default)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--config") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--config")
    return value


def _demo(name: str) -> Any:
    from tee_sim.demo import DEMO_FUNCTIONS

    return DEMO_FUNCTIONS[name]


_FUNCTION_CHOICE = click.Choice(["digest-stats", "linear-fit"])


@click.group(name="tee")
def group() -> None:
    """Simulated TEE attestation (SIMULATION ONLY: proves nothing about real hardware).

    \b
    Exit codes: 0 accepted, 1 rejected, 2 malformed input.
    """


@group.command("init")
@_state_option
@click.option("--force", is_flag=True, help="Replace an existing simulated vendor and platform.")
def init_cmd(state: str | None, force: bool) -> None:
    """Create a simulated vendor root, platform, collateral and a default policy."""
    from tee_sim.collateral import issue_collateral
    from tee_sim.demo import DEMO_FUNCTIONS
    from tee_sim.keys import SimulatedVendor
    from tee_sim.measurement import measure
    from tee_sim.platform import SimulatedPlatform
    from tee_sim.policy import AttestationPolicy, write_policy_file

    root = _state_dir(state)
    if (root / "vendor.json").exists() and not force:
        click.echo(f"{root}: already initialised (use --force to replace)", err=True)
        return
    root.mkdir(parents=True, exist_ok=True)
    vendor = SimulatedVendor.generate()
    platform = SimulatedPlatform.create(vendor)
    collateral = issue_collateral(vendor, platforms=[platform])
    _write_private(root / "vendor.json", json.dumps(vendor.to_json(), indent=1))
    _write_private(root / "platform.json", json.dumps(platform.to_json(), indent=1))
    (root / "collateral.json").write_bytes(collateral.to_bytes())
    (root / "root.pub").write_text(vendor.public_key.hex() + "\n")
    nonce_store = root / "nonces.json"
    if nonce_store.exists():
        nonce_store.unlink()
    policy = AttestationPolicy(allowed_mr_enclave=frozenset(measure(fn, cfg) for fn, cfg in DEMO_FUNCTIONS.values()))
    write_policy_file(root / "policy.json", root_public_key=vendor.public_key, policy=policy)
    click.echo(f"simulated TEE state in {root}/ (SIMULATION ONLY)", err=True)
    click.echo(f"  vendor root (pin this): {vendor.public_key.hex()}", err=True)
    click.echo(f"  platform id: {platform.platform_id.hex()}  fmspc: {platform.fmspc.hex()}", err=True)
    click.echo(f"  policy: {root / 'policy.json'} (pins the built-in demo functions at default config)", err=True)


@group.command("policy")
@_state_option
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Policy file to write.")
@click.option("--root", "root_file", type=click.Path(dir_okay=False), default=None,
              help="File with the hex vendor root public key to pin (default: STATE/root.pub).")
@click.option("--function", "function", type=_FUNCTION_CHOICE, multiple=True,
              help="Pin the mr_enclave of a built-in demo function (repeatable).")
@click.option("--config", "config", default=None, help="JSON config for --function (default: its default).")
@click.option("--mr-enclave", "mr_enclave", multiple=True, help="Pin this mr_enclave (hex; repeatable).")
@click.option("--mr-signer", "mr_signer", multiple=True, help="Pin this mr_signer (hex; repeatable).")
@click.option("--min-isv-svn", type=click.IntRange(0, 0xFFFF), default=0, show_default=True)
@click.option("--isv-prod-id", type=click.IntRange(0, 0xFFFF), default=None)
@click.option("--allow-status", "statuses", multiple=True,
              help="Allowed TCB status (repeatable; default: UpToDate only).")
@click.option("--allow-debug", is_flag=True, help="Accept DEBUG enclaves (unsafe outside development).")
@click.option("--allow-any-measurement", is_flag=True,
              help="UNSAFE: accept any code; the quote then proves nothing about what ran.")
def policy_cmd(
    state: str | None,
    out: str,
    root_file: str | None,
    function: tuple[str, ...],
    config: str | None,
    mr_enclave: tuple[str, ...],
    mr_signer: tuple[str, ...],
    min_isv_svn: int,
    isv_prod_id: int | None,
    statuses: tuple[str, ...],
    allow_debug: bool,
    allow_any_measurement: bool,
) -> None:
    """Write a policy file pinning the vendor root and the code you accept."""
    import warnings

    from tee_sim._encoding import from_hex
    from tee_sim.errors import PolicyError
    from tee_sim.measurement import measure
    from tee_sim.policy import AttestationPolicy, UnsafePolicyWarning, write_policy_file

    root_path = Path(root_file) if root_file else _state_dir(state) / "root.pub"
    root_key = from_hex(_read_state(root_path, "vendor root public key").decode("ascii", "replace").strip(), 32,
                        PolicyError, f"root public key in {root_path}")
    enclaves = {from_hex(m, 32, PolicyError, "--mr-enclave") for m in mr_enclave}
    for name in function:
        fn, default = _demo(name)
        enclaves.add(measure(fn, _parse_config(config, default)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafePolicyWarning)
        policy = AttestationPolicy(
            allowed_mr_enclave=frozenset(enclaves),
            allowed_mr_signer=frozenset(from_hex(m, 32, PolicyError, "--mr-signer") for m in mr_signer),
            allowed_tcb_statuses=frozenset(statuses or ("UpToDate",)),  # type: ignore[arg-type]
            min_isv_svn=min_isv_svn,
            isv_prod_id=isv_prod_id,
            allow_debug=allow_debug,
            allow_any_measurement=allow_any_measurement,
        )
    if allow_any_measurement:
        click.echo("WARNING: this policy accepts ANY enclave code (--allow-any-measurement)", err=True)
    write_policy_file(out, root_public_key=root_key, policy=policy)
    click.echo(f"wrote {out}", err=True)


@group.command("measure")
@click.option("--function", "function", type=_FUNCTION_CHOICE, default="digest-stats", show_default=True)
@click.option("--config", "config", default=None, help="JSON config (default: the function's default).")
def measure_cmd(function: str, config: str | None) -> None:
    """Print the mr_enclave (hex) of a built-in demo function with a config."""
    from tee_sim.measurement import measure

    fn, default = _demo(function)
    click.echo(measure(fn, _parse_config(config, default)).hex())


@group.command("nonce")
@_state_option
@click.option("--ttl", type=click.FloatRange(min=1.0), default=300.0, show_default=True, help="Seconds it stays valid.")
def nonce_cmd(state: str | None, ttl: float) -> None:
    """Issue a fresh 256-bit nonce from the verifier's registry (printed as hex)."""
    from tee_sim.nonces import NonceRegistry

    registry = NonceRegistry(ttl_seconds=ttl, path=_state_dir(state) / "nonces.json")
    click.echo(registry.issue().hex())


@group.command("collateral")
@_state_option
@click.option("--status", "status", default="UpToDate", show_default=True, help="TCB status for the platform.")
@click.option("--advisory", "advisories", multiple=True, help="Advisory id, e.g. INTEL-SA-00334 (repeatable).")
@click.option("--revoke", is_flag=True, help="Put the platform on the revocation list.")
@click.option("--valid-for", type=int, default=30 * 24 * 3600, show_default=True,
              help="Seconds until next_update (negative: already expired).")
def collateral_cmd(state: str | None, status: str, advisories: tuple[str, ...], revoke: bool, valid_for: int) -> None:
    """Re-issue the simulated vendor's collateral (e.g. to simulate an OutOfDate TCB)."""
    import time

    from tee_sim.collateral import TcbStatus, issue_collateral
    from tee_sim.keys import SimulatedVendor
    from tee_sim.platform import SimulatedPlatform

    root = _state_dir(state)
    try:
        tcb_status = TcbStatus(status)
    except ValueError:
        raise click.BadParameter(f"expected one of {[s.value for s in TcbStatus]}", param_hint="--status") from None
    vendor = SimulatedVendor.from_json(_read_state(root / "vendor.json", "simulated vendor"))
    platform = SimulatedPlatform.from_json(_read_state(root / "platform.json", "simulated platform"))
    now = int(time.time())
    collateral = issue_collateral(
        vendor,
        platforms=[platform],
        status=tcb_status,
        advisory_ids=advisories,
        revoked_platform_ids=[platform.platform_id] if revoke else [],
        issue_date=min(now, now + valid_for),
        next_update=now + valid_for,
    )
    (root / "collateral.json").write_bytes(collateral.to_bytes())
    click.echo(f"wrote {root / 'collateral.json'}: {tcb_status.value}{', REVOKED' if revoke else ''}", err=True)


@group.command("attest")
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--nonce", "nonce_hex", required=True, help="The verifier's nonce (hex, >= 128 bits).")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Directory for the evidence.")
@click.option("--function", "function", type=_FUNCTION_CHOICE, default="digest-stats", show_default=True)
@click.option("--config", "config", default=None, help="JSON config (default: the function's default).")
@click.option("--isv-svn", type=click.IntRange(0, 0xFFFF), default=0, show_default=True)
@click.option("--isv-prod-id", type=click.IntRange(0, 0xFFFF), default=0, show_default=True)
@click.option("--debug", is_flag=True, help="Launch as a DEBUG enclave (verifiers reject it by default).")
@_state_option
def attest_cmd(
    input_file: str,
    nonce_hex: str,
    out: str,
    function: str,
    config: str | None,
    isv_svn: int,
    isv_prod_id: int,
    debug: bool,
    state: str | None,
) -> None:
    """Run a built-in demo function in a simulated enclave; write output, quote and collateral.

    Writes OUT/output.bin, OUT/quote.bin, OUT/collateral.json and OUT/evidence.json.
    """
    from tee_sim.nonces import parse_nonce_hex
    from tee_sim.platform import SimulatedPlatform

    root = _state_dir(state)
    nonce = parse_nonce_hex(nonce_hex)
    platform = SimulatedPlatform.from_json(_read_state(root / "platform.json", "simulated platform"))
    collateral = _read_state(root / "collateral.json", "collateral")
    fn, default = _demo(function)
    enclave = platform.launch(fn, config=_parse_config(config, default), isv_svn=isv_svn,
                              isv_prod_id=isv_prod_id, debug=debug)
    try:
        output, quote = enclave.run(Path(input_file).read_bytes(), nonce=nonce)
    except (ValueError, UnicodeDecodeError) as exc:
        from tee_sim.errors import TeeInputError

        raise TeeInputError(f"{function} could not process {input_file}: {exc}") from None
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "output.bin").write_bytes(output)
    (out_dir / "quote.bin").write_bytes(quote.to_bytes())
    (out_dir / "collateral.json").write_bytes(collateral)
    evidence = {
        "schema_version": 1,
        "simulated": True,
        "function": function,
        "nonce": nonce.hex(),
        "mr_enclave": enclave.mr_enclave.hex(),
        "quote": "quote.bin",
        "output": "output.bin",
        "collateral": "collateral.json",
    }
    (out_dir / "evidence.json").write_text(json.dumps(evidence, indent=1, sort_keys=True) + "\n")
    click.echo(f"SIMULATED quote for {enclave.name}{' (DEBUG)' if debug else ''}", err=True)
    click.echo(f"  mr_enclave {enclave.mr_enclave.hex()}", err=True)
    click.echo(f"  wrote {out_dir}/quote.bin, output.bin, collateral.json, evidence.json", err=True)


@group.command("verify")
@click.argument("quote_file", type=click.Path(dir_okay=False))
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), required=True,
              help="Policy file (pins the vendor root and the accepted code).")
@click.option("--nonce", "nonce_hex", default=None,
              help="The nonce you issued (hex). Default: the one in evidence.json beside the quote; "
              "either way it must be fresh in this verifier's registry.")
@click.option("--collateral", "collateral_file", type=click.Path(dir_okay=False), default=None,
              help="Collateral (default: collateral.json beside the quote).")
@click.option("--output", "output_file", type=click.Path(dir_okay=False), default=None,
              help="The enclave output the quote must bind (default: output.bin beside the quote).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@_state_option
@click.pass_context
def verify_cmd(
    ctx: click.Context,
    quote_file: str,
    policy_file: str,
    nonce_hex: str | None,
    collateral_file: str | None,
    output_file: str | None,
    as_json: bool,
    state: str | None,
) -> None:
    """Verify a simulated quote. Exit 0 accepted, 1 rejected, 2 malformed input."""
    from tee_sim.errors import TeeInputError

    try:
        result = _verify(quote_file, policy_file, nonce_hex, collateral_file, output_file, state)
    except TeeInputError as exc:
        if as_json:
            click.echo(json.dumps({"schema_version": 1, "verdict": "error", "simulated": True, "error": str(exc),
                                   "checks": []}, sort_keys=True))
        raise
    if as_json:
        doc = result.to_json()
        doc["quote"] = quote_file
        click.echo(json.dumps(doc, indent=1, sort_keys=True))
    else:
        click.echo(f"SIMULATED TEE attestation: {result.verdict.upper()}")
        for check in result.checks:
            mark = "ok  " if check.passed else "FAIL"
            click.echo(f"  {mark} {check.name:<30} {check.figure:<24.64} {check.detail}")
        if result.reasons:
            click.echo("reasons: " + ", ".join(r.value for r in result.reasons))
    ctx.exit(0 if result.accepted else 1)


def _verify(
    quote_file: str,
    policy_file: str,
    nonce_hex: str | None,
    collateral_file: str | None,
    output_file: str | None,
    state: str | None,
) -> Any:
    from tee_sim._encoding import strict_json_loads
    from tee_sim.collateral import Collateral
    from tee_sim.errors import (
        CollateralFormatError,
        NonceFormatError,
        QuoteFormatError,
        TeeInputError,
    )
    from tee_sim.nonces import NonceRegistry, parse_nonce_hex
    from tee_sim.verify import AttestationVerifier

    quote_path = Path(quote_file)
    here = quote_path.parent

    def read(path: Path, what: str, error: type[TeeInputError]) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None

    quote_bytes = read(quote_path, "quote", QuoteFormatError)
    collateral = Collateral.from_bytes(
        read(Path(collateral_file) if collateral_file else here / "collateral.json", "collateral",
             CollateralFormatError)
    )
    output = read(Path(output_file) if output_file else here / "output.bin", "enclave output", TeeInputError)
    if nonce_hex is None:
        evidence = strict_json_loads(read(here / "evidence.json", "evidence (or pass --nonce)", NonceFormatError),
                                     NonceFormatError, "evidence.json")
        if not isinstance(evidence, dict) or not isinstance(evidence.get("nonce"), str):
            raise NonceFormatError("evidence.json has no nonce; pass --nonce")
        nonce_hex = evidence["nonce"]
    nonce = parse_nonce_hex(nonce_hex)
    nonces = NonceRegistry(path=_state_dir(state) / "nonces.json")
    verifier = AttestationVerifier.from_policy_file(policy_file, collateral=collateral, nonces=nonces)
    return verifier.verify(quote_bytes, nonce=nonce, output=output)
