"""Fraud proofs: a small file showing that one step of a signed proof does not replay.

A fraud proof names a proof (its subject digest, :mod:`verifier.subject`), a unit of steps
``start .. stop-1`` (one step after a dispute, :mod:`verifier.dispute`), the digest of the state
before it and the digest claimed after it, and carries the state before it. Each digest comes
either from the proof's own commitments (``committed``: per-step digests of format 3, or a
checkpoint's digest) or from a **claim** the prover signed during the dispute (``claim``:
``"pol-dispute-claim-sig-v1" || canonical_json({"schema", "subject", "step", "digest"})`` under
the proof's signer key). A referee (``pol dispute referee``, :func:`referee`) checks:

1. the fraud proof names this proof, whose signatures verify under the key the referee trusts;
2. each digest is what the proof commits, or what its signer signed in a claim;
3. the carried state hashes to the start digest;
4. replaying the unit from it does **not** give the end digest (exact mode).

Only when all hold is the fraud **proven** (exit 0); else it is not (exit 1). The referee's work
is one step's replay plus hashing two states. An honest step cannot be framed: its replay gives
the committed digest (or the digest its honest prover signed), and a digest the proof does not
commit nor its signer claim fails check 2.

File (HDF5, read in the sandbox of :mod:`pol.untrusted_h5`, never a pickle):

| path | content |
|---|---|
| ``/`` attrs | ``format = "pol-fraud-proof"``, ``format_version = 1``, ``subject`` (hex), ``start_step``, ``stop_step``, ``start_basis``, ``end_basis`` (``committed`` / ``claim``), ``start_digest``, ``end_digest``, ``accuser_digest`` (what the accuser's replay gave; informational), ``rounds`` (bisection rounds), ``claims`` (JSON list of signed claims, possibly empty) |
| ``/state/<tensor path>`` | the state after ``start_step`` steps (raw datasets, tensor names as in a checkpoint) |
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nacl.signing import SigningKey

from pol.errors import BadSignatureError, ProofFormatError
from pol.hashing import canonical_json, state_digest
from pol.keys import TrustedKey, resolve_trusted_key, sign, verify_signature
from pol.proof_file import ProofReader
from pol.schema import Attr, Group, hex32
from pol.state import State
from pol.untrusted_h5 import UntrustedFile
from pol.smallfiles import parse_json
from verifier import untrusted_json as uj
from verifier.report import Check

FORMAT = "pol-fraud-proof"
VERSION = 1
COMMITTED, CLAIM = "committed", "claim"
CLAIM_SCHEMA = "pol-dispute-claim-v1"
CLAIM_DOMAIN = b"pol-dispute-claim-sig-v1"
MAX_CLAIMS_BYTES = 1 << 16
_BASIS = Attr(str, check=lambda v: v in (COMMITTED, CLAIM), what="'committed' or 'claim'")
_COUNT = Attr(int, check=lambda v: v >= 0, what="a non-negative integer")
LAYOUT = Group(
    attrs={"format": Attr(str, check=lambda v: v == FORMAT, what=repr(FORMAT)),
           "format_version": Attr(int, check=lambda v: v == VERSION, what=str(VERSION)),
           "subject": Attr(str, check=hex32, what="64 hex digits"),
           "start_step": _COUNT, "stop_step": _COUNT, "rounds": _COUNT,
           "start_basis": _BASIS, "end_basis": _BASIS,
           "start_digest": Attr(str, check=hex32, what="64 hex digits"),
           "end_digest": Attr(str, check=hex32, what="64 hex digits"),
           "accuser_digest": Attr(str, check=hex32, what="64 hex digits"),
           "claims": Attr(str, check=lambda v: len(v) <= MAX_CLAIMS_BYTES, what="a JSON list")},
    members={"state": Group(any_tree=True)})


# -- claims --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """The prover's signed statement: the state after ``step`` steps of ``subject`` has ``digest``."""

    subject: bytes
    step: int
    digest: bytes
    signature: bytes = b""

    def body(self) -> dict[str, Any]:
        return {"schema": CLAIM_SCHEMA, "subject": self.subject.hex(), "step": self.step, "digest": self.digest.hex()}

    def signed_bytes(self) -> bytes:
        return canonical_json(self.body())

    def to_json(self) -> dict[str, Any]:
        return {"claim": self.body(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, obj: Any, what: str = "claim") -> "Claim":
        if not isinstance(obj, dict):
            raise uj.DocumentError(f"{what} must be an object")
        uj.no_other_fields(obj, {"claim", "signature"}, what)
        body = uj.field(obj, "claim", dict, what)
        uj.no_other_fields(body, {"schema", "subject", "step", "digest"}, what)
        if uj.field(body, "schema", str, what) != CLAIM_SCHEMA:
            raise uj.DocumentError(f"{what} is not a {CLAIM_SCHEMA} claim")
        step = uj.field(body, "step", int, what)
        if step < 0:
            raise uj.DocumentError(f"{what}: negative step")
        return cls(uj.hex_field(body, "subject", 32, what) or b"", step, uj.hex_field(body, "digest", 32, what) or b"",
                   uj.hex_field(obj, "signature", 64, what) or b"")

    def signed_by(self, public_key: bytes) -> bool:
        try:
            verify_signature(public_key, CLAIM_DOMAIN, self.signed_bytes(), self.signature)
        except BadSignatureError:
            return False
        return True


def sign_claim(key: SigningKey, subject: bytes, step: int, digest: bytes) -> Claim:
    unsigned = Claim(subject, step, digest)
    return Claim(subject, step, digest, sign(key, CLAIM_DOMAIN, unsigned.signed_bytes()))


# -- the file ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FraudProof:
    subject: bytes
    start_step: int
    stop_step: int
    start_basis: str
    end_basis: str
    start_digest: bytes
    end_digest: bytes
    accuser_digest: bytes
    state: State
    claims: tuple[Claim, ...] = ()
    rounds: int = 0

    @property
    def steps(self) -> int:
        return self.stop_step - self.start_step


def write_fraud_proof(path: str | os.PathLike[str], fp: FraudProof) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        a = f.attrs
        a["format"], a["format_version"], a["subject"] = FORMAT, VERSION, fp.subject.hex()
        a["start_step"], a["stop_step"], a["rounds"] = fp.start_step, fp.stop_step, fp.rounds
        a["start_basis"], a["end_basis"] = fp.start_basis, fp.end_basis
        a["start_digest"], a["end_digest"] = fp.start_digest.hex(), fp.end_digest.hex()
        a["accuser_digest"] = fp.accuser_digest.hex()
        a["claims"] = json.dumps([c.to_json() for c in fp.claims], sort_keys=True)
        g = f.create_group("state")
        for name, arr in sorted(fp.state.items()):
            g.create_dataset(name, data=arr, **({"compression": "gzip", "shuffle": True} if arr.size > 16 else {}))


def read_fraud_proof(path: str | os.PathLike[str]) -> FraudProof:
    """Read a fraud proof in the sandbox; raise ProofFormatError (exit 2) on any malformation."""
    with UntrustedFile(path, what="fraud proof") as f:
        root = f.root
        LAYOUT.validate(root, "fraud proof /")
        a = root.attrs
        try:
            claims_doc = parse_json(a["claims"], "claims", ValueError)
            if not isinstance(claims_doc, list) or len(claims_doc) > 64:
                raise ValueError("claims must be a list of at most 64")
            claims = tuple(Claim.from_json(c) for c in claims_doc)
        except (ValueError, uj.DocumentError) as exc:
            raise ProofFormatError(f"{path}: malformed claims ({str(exc)[:160]})") from None
        if a["stop_step"] <= a["start_step"]:
            raise ProofFormatError(f"{path}: stop_step must be after start_step")
        state = {name: np.array(node.read()) for name, node in root.get("state").visit_datasets()}  # type: ignore[union-attr]
        return FraudProof(bytes.fromhex(a["subject"]), int(a["start_step"]), int(a["stop_step"]), a["start_basis"],
                          a["end_basis"], bytes.fromhex(a["start_digest"]), bytes.fromhex(a["end_digest"]),
                          bytes.fromhex(a["accuser_digest"]), state, claims, int(a["rounds"]))


# -- the referee ---------------------------------------------------------------------------------
@dataclass
class RefereeResult:
    subject: str
    checks: list[Check] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "proven" if self.checks and all(c.passed for c in self.checks) else "not proven"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "proven" else 1

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "verdict": self.verdict, "subject": self.subject,
                "checks": [c.__dict__ for c in self.checks], **self.info}


def _digest_basis(fp: FraudProof, reader: ProofReader, which: str, step: int, digest: bytes, basis: str) -> Check:
    from verifier.unit_replay import committed_digest_after

    name = f"{which}_digest"
    if basis == COMMITTED:
        committed = committed_digest_after(reader, step)
        ok = committed == digest
        return Check(name, ok, f"committed after step {step}" if ok else "not committed",
                     "" if ok else f"the proof commits {committed.hex()[:16] + '…' if committed else 'no digest'} after "
                                   f"step {step}; the fraud proof names {digest.hex()[:16]}…")
    signer = bytes(reader.signer_public_key)
    for c in fp.claims:
        if c.subject == fp.subject and c.step == step and c.digest == digest and c.signed_by(signer):
            return Check(name, True, f"claimed by the signer for step {step}", "")
    return Check(name, False, "no valid claim",
                 f"no claim signed by the proof's signer binds {digest.hex()[:16]}… to the state after step {step}")


def referee(fraud: str | os.PathLike[str], proof: str | os.PathLike[str], public_key: str | TrustedKey | None, *,
            data: str | None = None, model: str | None = None, loss: str | None = None, device: str = "auto",
            data_kwargs: dict[str, Any] | None = None) -> RefereeResult:
    """Judge a fraud proof against the proof it names (see the module docstring)."""
    from verifier import checks
    from verifier.subject import proof_subject
    from verifier.unit_replay import ExactUnitReplayer

    fp = read_fraud_proof(fraud)
    trusted = resolve_trusted_key(public_key) if isinstance(public_key, str) else public_key
    result = RefereeResult(fp.subject.hex())
    result.info.update({"start_step": fp.start_step, "stop_step": fp.stop_step, "rounds": fp.rounds,
                        "start_basis": fp.start_basis, "end_basis": fp.end_basis})
    with ProofReader(proof, model_spec=model) as reader:
        subject = proof_subject(reader).digest
        integrity = [checks.signer_check(reader, trusted), checks.plan_signature_check(reader),
                     checks.final_signature_check(reader), checks.chain_check(reader)]
        ok = all(c.passed for c in integrity)
        result.checks.append(Check("proof", ok, "signer trusted, signatures and chain valid" if ok else "not valid",
                                   "; ".join(f"{c.name}: {c.detail or c.figure}" for c in integrity if not c.passed)))
        same = subject == fp.subject
        result.checks.append(Check("subject", same, "the fraud proof names this proof" if same else "another proof",
                                   "" if same else f"the proof's subject is {subject.hex()[:16]}…"))
        if fp.stop_step > reader.num_recorded_steps:
            result.checks.append(Check("unit", False, f"steps {fp.start_step}-{fp.stop_step}",
                                       f"the proof records {reader.num_recorded_steps} steps"))
            return result
        result.checks.append(_digest_basis(fp, reader, "start", fp.start_step, fp.start_digest, fp.start_basis))
        result.checks.append(_digest_basis(fp, reader, "end", fp.stop_step, fp.end_digest, fp.end_basis))
        if not all(c.passed for c in result.checks):
            return result
        t0 = time.perf_counter()
        got = state_digest(fp.state)
        hashed = time.perf_counter() - t0
        result.checks.append(Check("state", got == fp.start_digest, "hashes to the start digest" if got == fp.start_digest
                                   else "does not hash to the start digest",
                                   "" if got == fp.start_digest else f"the carried state hashes to {got.hex()[:16]}…"))
        if got != fp.start_digest:
            return result
        units = ExactUnitReplayer(reader, data=data, model=model, loss=loss, device=device, data_kwargs=data_kwargs)
        t1 = time.perf_counter()
        try:
            _, digests = units.replay_steps(fp.state, fp.start_step, fp.stop_step)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ProofFormatError(f"the fraud proof's state cannot be replayed: {str(exc)[:160]}") from None
        replay_seconds = time.perf_counter() - t1
        differs = digests[-1] != fp.end_digest
        what = f"step {fp.start_step}" if fp.steps == 1 else f"steps {fp.start_step}-{fp.stop_step - 1}"
        result.checks.append(Check("replay", differs, f"{what} replayed: {digests[-1].hex()[:16]}… "
                                   + ("differs from" if differs else "equals") + f" {fp.end_digest.hex()[:16]}…",
                                   "" if differs else f"{what} reproduces the digest: nothing is forged there"))
        result.info.update({"replayed_steps": fp.steps, "referee_compute_seconds": round(hashed + replay_seconds, 6),
                            "replayed_digest": digests[-1].hex(), "accuser_digest": fp.accuser_digest.hex()})
    return result
