"""``pol tee``: a simulated TEE on the command line.

A state directory (``--state``, default ``$POL_TEE_STATE`` or ``./.pol-tee``) holds three
parties' files, as a simulation does:

* the simulated hardware and vendor: ``vendor.json``, ``platform.json`` (secret keys; whoever
  reads ``platform.json`` can sign any quote: it plays the CPU's fused keys), and
  ``collateral.json``, the vendor's latest published collateral (its "PCS");
* the verifier: ``root.pub`` (the pinned root), ``policy.json``, ``nonces.json`` (single-use
  nonces across invocations) and ``collateral-store.json``, the collateral it trusts:
  refreshed from the vendor's publication, never older than what it has seen, never read
  from the evidence.

Typical flow::

    pol tee init                                   # vendor, platform, collateral, verifier files
    N=$(pol tee nonce)                             # verifier: a fresh 256-bit nonce
    pol tee attest data.txt --nonce $N --out ev/   # enclave: output.bin, quote.bin, evidence.json
    pol tee verify ev/quote.bin --policy .pol-tee/policy.json --nonce $N --input data.txt [--json]

Exit codes: 0 accepted, 1 rejected, 2 malformed input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

_STATE_HELP = "State directory (default: $POL_TEE_STATE or ./.pol-tee)."
#: The verifier's collateral store inside the state directory.
STORE_FILE = "collateral-store.json"


def _state_dir(state: str | None) -> Path:
    return Path(state or os.environ.get("POL_TEE_STATE") or ".pol-tee")


def _state_option(fn: Any) -> Any:
    return click.option("--state", "state", type=click.Path(file_okay=False), default=None, help=_STATE_HELP)(fn)


def _read_state(path: Path, what: str) -> bytes:
    from pol.smallfiles import JSON_FILE_BYTES, read_small_file
    from tee_sim.errors import StateError

    if not path.exists():
        raise StateError(f"{what} not found at {path}; run `pol tee init --state {path.parent}` first")
    return read_small_file(path, JSON_FILE_BYTES, what, StateError)


def _store(root: Path, root_public_key: bytes) -> Any:
    from tee_sim.collateral_store import CollateralStore

    return CollateralStore(root / STORE_FILE, root_public_key=root_public_key)


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
    for verifier_file in ("nonces.json", STORE_FILE):
        (root / verifier_file).unlink(missing_ok=True)
    _store(root, vendor.public_key).offer(collateral)
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
@click.option("--require-hardware", is_flag=True, help="Reject simulated evidence (i.e. everything pol tee makes).")
@click.option("--min-tcb-evaluation-number", type=click.IntRange(min=0), default=0, show_default=True,
              help="Refuse collateral whose TCB evaluation data number is lower.")
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
    require_hardware: bool,
    min_tcb_evaluation_number: int,
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
            require_hardware=require_hardware,
            min_tcb_evaluation_data_number=min_tcb_evaluation_number,
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
    """Re-issue (publish) the simulated vendor's collateral, e.g. an OutOfDate TCB or a revocation.

    Each issue raises the TCB evaluation data number. Verifiers pick it up on their next
    `pol tee verify` (or `pol tee refresh`); their store never goes back to an older one.
    """
    import time

    from tee_sim.collateral import Collateral, TcbStatus, issue_collateral
    from tee_sim.keys import SimulatedVendor
    from tee_sim.platform import SimulatedPlatform

    root = _state_dir(state)
    try:
        tcb_status = TcbStatus(status)
    except ValueError:
        raise click.BadParameter(f"expected one of {[s.value for s in TcbStatus]}", param_hint="--status") from None
    vendor = SimulatedVendor.from_json(_read_state(root / "vendor.json", "simulated vendor"))
    platform = SimulatedPlatform.from_json(_read_state(root / "platform.json", "simulated platform"))
    published = root / "collateral.json"
    previous = Collateral.from_bytes(published.read_bytes()).tcb_evaluation_data_number if published.exists() else 0
    now = int(time.time())
    collateral = issue_collateral(
        vendor,
        platforms=[platform],
        status=tcb_status,
        advisory_ids=advisories,
        revoked_platform_ids=[platform.platform_id] if revoke else [],
        issue_date=min(now, now + valid_for),
        next_update=now + valid_for,
        tcb_evaluation_data_number=previous + 1,
    )
    published.write_bytes(collateral.to_bytes())
    click.echo(f"published {published}: {tcb_status.value}{', REVOKED' if revoke else ''}, "
               f"TCB evaluation {previous + 1}", err=True)


@group.command("refresh")
@_state_option
@click.option("--collateral", "collateral_file", type=click.Path(dir_okay=False), default=None,
              help="Collateral to offer (default: the vendor's published STATE/collateral.json).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), default=None,
              help="Policy file whose pinned root the collateral must chain to (default: STATE/root.pub).")
def refresh_cmd(state: str | None, collateral_file: str | None, policy_file: str | None) -> None:
    """Offer collateral to the verifier's store: adopted only if signed by the pinned root and newer.

    Exit 0 adopted or unchanged, 1 stale or untrusted (not adopted), 2 malformed.
    """
    from tee_sim.collateral_store import StoreUpdate

    root = _state_dir(state)
    outcome = _refresh(root, _pinned_root(root, policy_file), Path(collateral_file) if collateral_file else None)
    click.echo(f"collateral {outcome.value}", err=True)
    if outcome in (StoreUpdate.STALE, StoreUpdate.UNTRUSTED):
        raise click.exceptions.Exit(1)


def _pinned_root(root: Path, policy_file: str | None) -> bytes:
    from tee_sim._encoding import from_hex
    from tee_sim.errors import PolicyError
    from tee_sim.policy import read_policy_file

    if policy_file is not None:
        return read_policy_file(policy_file)[0]
    text = _read_state(root / "root.pub", "vendor root public key").decode("ascii", "replace").strip()
    return from_hex(text, 32, PolicyError, f"root public key in {root / 'root.pub'}")


def _refresh(root: Path, root_public_key: bytes, offered: Path | None) -> Any:
    """Offer ``offered`` (default: the vendor's publication, if any) to the verifier's store."""
    from tee_sim.collateral import Collateral
    from tee_sim.collateral_store import StoreUpdate
    from tee_sim.errors import CollateralFormatError

    path = offered or root / "collateral.json"
    if offered is None and not path.exists():
        return StoreUpdate.UNCHANGED
    from pol.smallfiles import JSON_FILE_BYTES, read_small_file

    data = read_small_file(path, JSON_FILE_BYTES, "collateral", CollateralFormatError)
    return _store(root, root_public_key).offer(Collateral.from_bytes(data))


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
    """Run a built-in demo function in a simulated enclave; write its output and quote.

    Writes OUT/output.bin, OUT/quote.bin and OUT/evidence.json (a description; a verifier reads
    none of it but the quote and the output, and brings its own nonce, input and collateral).
    """
    import hashlib

    from tee_sim.nonces import parse_nonce_hex
    from tee_sim.platform import SimulatedPlatform

    root = _state_dir(state)
    nonce = parse_nonce_hex(nonce_hex)
    platform = SimulatedPlatform.from_json(_read_state(root / "platform.json", "simulated platform"))
    fn, default = _demo(function)
    enclave = platform.launch(fn, config=_parse_config(config, default), isv_svn=isv_svn,
                              isv_prod_id=isv_prod_id, debug=debug)
    data = Path(input_file).read_bytes()
    try:
        output, quote = enclave.run(data, nonce=nonce)
    except (ValueError, UnicodeDecodeError) as exc:
        from tee_sim.errors import TeeInputError

        raise TeeInputError(f"{function} could not process {input_file}: {exc}") from None
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "output.bin").write_bytes(output)
    (out_dir / "quote.bin").write_bytes(quote.to_bytes())
    evidence = {
        "schema_version": 2,
        "simulated": True,
        "function": function,
        "mr_enclave": enclave.mr_enclave.hex(),
        "input_sha256": hashlib.sha256(data).hexdigest(),
        "quote": "quote.bin",
        "output": "output.bin",
    }
    (out_dir / "evidence.json").write_text(json.dumps(evidence, indent=1, sort_keys=True) + "\n")
    click.echo(f"SIMULATED quote for {enclave.name}{' (DEBUG)' if debug else ''}", err=True)
    click.echo(f"  mr_enclave {enclave.mr_enclave.hex()}", err=True)
    click.echo(f"  wrote {out_dir}/quote.bin, output.bin, evidence.json", err=True)


@group.command("verify")
@click.argument("quote_file", type=click.Path(dir_okay=False))
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), required=True,
              help="Policy file (pins the vendor root and the accepted code).")
@click.option("--nonce", "nonce_hex", required=True,
              help="The nonce you issued (hex); it must be fresh in this verifier's registry.")
@click.option("--input", "input_file", type=click.Path(dir_okay=False), required=True,
              help="The input you gave the enclave (its digest is bound in the quote).")
@click.option("--output", "output_file", type=click.Path(dir_okay=False), default=None,
              help="The enclave output the quote must bind (default: output.bin beside the quote).")
@click.option("--collateral", "collateral_file", type=click.Path(dir_okay=False), default=None,
              help="Offer this collateral to your store first (adopted only if newer); never used directly.")
@click.option("--no-refresh", is_flag=True, help="Do not refresh the store from the vendor's STATE/collateral.json.")
@click.option("--require-hardware", is_flag=True, help="Reject simulated evidence whatever the policy file says.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@_state_option
@click.pass_context
def verify_cmd(
    ctx: click.Context,
    quote_file: str,
    policy_file: str,
    nonce_hex: str,
    input_file: str,
    output_file: str | None,
    collateral_file: str | None,
    no_refresh: bool,
    require_hardware: bool,
    as_json: bool,
    state: str | None,
) -> None:
    """Verify a simulated quote. Exit 0 accepted (simulated), 1 rejected, 2 malformed input."""
    from pol.terminal import printable
    from tee_sim.errors import TeeInputError

    try:
        result, refreshed = _verify(quote_file, policy_file, nonce_hex, input_file, output_file, collateral_file,
                                    no_refresh, require_hardware, state)
    except TeeInputError:
        raise  # pol's entry point prints the one error line (and with --json the error document)
    if as_json:
        doc = result.to_json()
        doc["quote"] = quote_file
        doc["collateral_refresh"] = refreshed
        click.echo(json.dumps(doc, indent=1, sort_keys=True))
    else:
        click.echo(f"SIMULATED TEE attestation: {result.verdict.upper()}")
        for check in result.checks:
            mark = "ok  " if check.passed else "FAIL"
            click.echo(printable(f"  {mark} {check.name:<30} {check.figure:<24.64} {check.detail}"))
        if result.reasons:
            click.echo("reasons: " + ", ".join(r.value for r in result.reasons))
    ctx.exit(0 if result.verdict in ("accepted", "accepted (simulated)") else 1)


def _verify(
    quote_file: str,
    policy_file: str,
    nonce_hex: str,
    input_file: str,
    output_file: str | None,
    collateral_file: str | None,
    no_refresh: bool,
    require_hardware: bool,
    state: str | None,
) -> tuple[Any, dict[str, str]]:
    import dataclasses

    from tee_sim.errors import QuoteFormatError, TeeInputError
    from tee_sim.nonces import NonceRegistry, parse_nonce_hex
    from tee_sim.policy import read_policy_file
    from tee_sim.verify import AttestationVerifier

    quote_path = Path(quote_file)

    def read(path: Path, what: str, error: type[TeeInputError]) -> bytes:
        from pol.smallfiles import DATA_FILE_BYTES, read_small_file

        return read_small_file(path, DATA_FILE_BYTES, what, error)

    quote_bytes = read(quote_path, "quote", QuoteFormatError)
    data = read(Path(input_file), "enclave input", TeeInputError)
    output = read(Path(output_file) if output_file else quote_path.parent / "output.bin", "enclave output",
                  TeeInputError)
    nonce = parse_nonce_hex(nonce_hex)
    root_key, policy = read_policy_file(policy_file)
    if require_hardware:
        policy = dataclasses.replace(policy, require_hardware=True)
    root = _state_dir(state)
    refreshed = {}
    if not no_refresh:
        refreshed["vendor"] = _refresh(root, root_key, None).value
    if collateral_file is not None:
        from tee_sim.collateral_store import StoreUpdate
        from tee_sim.errors import CollateralFormatError

        offered = _refresh(root, root_key, Path(collateral_file))
        if offered is StoreUpdate.UNTRUSTED:  # the user asked for this file: say so, never ignore it silently
            raise CollateralFormatError(f"collateral {collateral_file} is not signed by the pinned vendor root")
        refreshed["offered"] = offered.value
    verifier = AttestationVerifier(root_public_key=root_key, collateral=_store(root, root_key), policy=policy,
                                   nonces=NonceRegistry(path=root / "nonces.json"))
    return verifier.verify(quote_bytes, nonce=nonce, input=data, output=output), refreshed
