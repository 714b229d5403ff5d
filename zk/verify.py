"""Judge a proof's ``/zk`` section: what ``pol zk verify`` and ``pol verify`` report.

Order matters, because the section is written by the party a proof-of-learning distrusts:

1. cheap and signed: the section's size caps (:func:`zk.section.read_section`), its run id, its
   Ed25519 signature, and its parameters against the verifier's :class:`~zk.policy.ZkPolicy`.
   If any fails, no generator is derived and no point decoded.
2. against the proof: the committed checkpoints must be links of the proof's chain and the
   committed layout must be the stored weights' layout, before any curve work.
3. curve work, bounded by the policy: decode every commitment (curve and subgroup checks),
   then ``zk.binding``: each commitment opens to the quantisation of the stored checkpoint the
   chain hashes (all of them, or a verifier-random sample with its detection probability).
4. ownership proofs and chunk openings count only for checkpoints whose binding was checked;
   for a checkpoint the file does not store they are reported as unbound (``passed`` None).

Checks are dicts ``{name, passed, figure, detail}``; ``passed`` is None where a result is
informational (unbound). :class:`ZkResult.verdict` is ``verified`` only when every check ran
and passed under a trusted key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zk.backend import Backend, get_backend
from zk.errors import ProofRejected, ZkFormatError
from zk.link import OwnershipProof, model_tensors, open_reader, checkpoint_context, parse_openings, run_id_of
from zk.pedersen import Committer
from zk.policy import ZkPolicy
from zk.section import SIGN_DOMAIN, ZkSection, read_section
from zk.sigma import Context, verify_binding, verify_chunk_opening, verify_opening
from zk.weights import quantised

SCHEMA_VERSION = 1


@dataclass
class ZkResult:
    """The checks of one ``/zk`` section, plus informational figures."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    trusted: bool = False

    def add(self, name: str, passed: bool | None, figure: str, detail: str) -> None:
        self.checks.append({"name": name, "passed": passed, "figure": figure, "detail": detail})

    def check(self, name: str) -> dict[str, Any]:
        for c in self.checks:
            if c["name"] == name:
                return c
        raise KeyError(name)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c["passed"] is False]

    @property
    def bound(self) -> bool:
        """True when the commitments were checked against the stored checkpoints (``zk.binding`` passed)."""
        return any(c["name"] == "zk.binding" and c["passed"] is True for c in self.checks)

    @property
    def verdict(self) -> str:
        if self.failed:
            return "rejected"
        if not self.trusted:
            return "self-asserted"
        if any(c["passed"] is None for c in self.checks):
            return "unbound"
        return "verified"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "verified" else 1

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "verdict": self.verdict, "checks": self.checks, **self.info}


def _is_trusted(verify_key: Any, signer: bytes) -> bool:
    """Whether ``signer`` is the key the verifier trusts (a nacl VerifyKey, pol.keys.TrustedKey or raw bytes)."""
    if hasattr(verify_key, "matches"):  # pol.keys.TrustedKey: a key file or only a fingerprint
        return bool(verify_key.matches(signer))
    return bytes(verify_key) == signer


def verify_zk_section(
    proof: Any,
    verify_key: Any = None,
    *,
    policy: ZkPolicy | None = None,
    backend: Backend | None = None,
    ownership: tuple[bytes, bytes] | None = None,
    openings: Any = None,
    sample: int | None = None,
    seed: int | None = None,
    chain: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ZkResult:
    """Judge the ``/zk`` section of ``proof`` (a path, or an open :class:`pol.proof_file.ProofReader`).

    ``verify_key``: the key the verifier trusts (None: self-asserted). ``ownership``:
    ``(ownership proof bytes, the challenge the verifier issued)``; ``openings``: a parsed
    opening document. ``sample``: check the binding of this many stored checkpoints, drawn
    with the verifier's randomness (``seed``, default OS entropy), instead of all. ``chain``:
    also check that the stored checkpoints are the ones the signed chain hashes (``pol
    verify`` does that itself and passes False). Malformed input raises ZkFormatError.
    """
    if sample is not None and sample < 1:
        raise ValueError("sample must be at least 1 (a binding check of no checkpoint proves nothing)")
    if hasattr(proof, "checkpoint_state"):
        return _judge(proof, verify_key, policy or ZkPolicy(), backend, ownership, openings, sample, seed, chain,
                      cache_dir)
    with open_reader(proof) as reader:
        return _judge(reader, verify_key, policy or ZkPolicy(), backend, ownership, openings, sample, seed, chain,
                      cache_dir)


def _judge(reader: Any, verify_key: Any, policy: ZkPolicy, backend: Backend | None, ownership: Any, openings: Any,
           sample: int | None, seed: int | None, chain: bool, cache_dir: Any) -> ZkResult:
    section = read_section(reader)
    result = ZkResult(trusted=verify_key is not None)
    result.info["zk_policy"] = policy.describe()
    if not _accept_section(result, reader, section, verify_key, policy):
        result.info["zk_skipped"] = "no generator derived and no point decoded for a section the verifier did not accept"
        return result
    if chain:
        _chain_check(result, reader)
    own = OwnershipProof.from_bytes(ownership[0]) if ownership is not None else None
    doc = parse_openings(openings) if openings is not None else None
    if not _fits_the_proof(result, reader, section, policy):
        return result
    committer = Committer(section.params, backend or get_backend(), cache_dir)
    if not _points_check(result, committer, section):
        return result
    targets = {t for t in ((own.checkpoint if own else None), (doc[1] if doc else None)) if t is not None}
    bound, unbound, bad = _binding_check(result, reader, committer, section, policy, sample, seed, targets)
    if own is not None:
        result.checks.append(_ownership_check(committer, section, own, ownership[1], bound, unbound, bad))
    if doc is not None:
        result.checks.append(_openings_check(reader, committer, section, doc, bound, unbound, bad))
    return result


# --------------------------------------------------------------------------- 1. cheap, signed


def _accept_section(result: ZkResult, reader: Any, section: ZkSection, verify_key: Any, policy: ZkPolicy) -> bool:
    from pol.errors import BadSignatureError
    from pol.keys import fingerprint, verify_signature

    run_id = run_id_of(reader)
    same_run = section.run_id == run_id
    result.add("zk.bound_to_run", same_run, section.run_id.hex()[:16],
               "the /zk section names this proof's plan digest" if same_run
               else f"/zk is for run {section.run_id.hex()[:16]}, the proof is run {run_id.hex()[:16]}")
    signer = bytes(reader.signer_public_key)
    sig_ok, detail = True, "Ed25519 signature over the /zk digest by the proof's signer"
    if section.signer != signer:
        sig_ok, detail = False, "the /zk section is signed by a different key than the proof"
    elif verify_key is not None and not _is_trusted(verify_key, section.signer):
        sig_ok, detail = False, f"signer {fingerprint(section.signer)} is not the trusted key"
    else:
        try:
            verify_signature(section.signer, SIGN_DOMAIN, section.digest(), section.signature)
        except BadSignatureError:
            sig_ok, detail = False, "the /zk signature does not verify (section edited after signing?)"
    if sig_ok and verify_key is None:
        detail += " (self-asserted: no trusted key given)"
    result.add("zk.signature", sig_ok, fingerprint(section.signer), detail)
    p = section.params
    problems = policy.problems(p)
    result.add("zk.parameters", not problems,
               f"2^-{p.scale_bits}, {p.bits}-bit, chunks of {p.chunk_size}",
               "the verifier's pinned precision, generator DST and chunk-size limit" if not problems
               else "not the verifier's pinned parameters: " + "; ".join(problems))
    return same_run and sig_ok and not problems


def _chain_check(result: ZkResult, reader: Any) -> None:
    """The stored checkpoints are those the signed chain hashes (the verifier's own checks)."""
    from verifier import checks
    from verifier.scan import scan_checkpoints

    scan = scan_checkpoints(reader)
    parts = [checks.plan_signature_check(reader), checks.final_signature_check(reader), checks.chain_check(reader),
             checks.Check("checkpoints", not scan.digest_mismatch, "",
                          f"checkpoint(s) {scan.digest_mismatch[:6]} do not hash to the committed state digest")]
    failed = [c for c in parts if c.passed is not True]
    result.add("zk.chain", not failed, f"{len(reader.state_digests)} links",
               "plan and final signatures verify and every stored checkpoint hashes to its chain link"
               if not failed else "; ".join(f"{c.name}: {c.detail or c.figure}" for c in failed))


# --------------------------------------------------------------------------- 2. against the proof


def _fits_the_proof(result: ZkResult, reader: Any, section: ZkSection, policy: ZkPolicy) -> bool:
    n_links = len(reader.state_digests)
    outside = [i for i in section.checkpoints if i >= n_links]
    problem = ""
    if outside:
        problem = f"checkpoint(s) {outside[:8]} are not links of the proof's chain ({n_links} links)"
    else:
        stored = [i for i in section.checkpoints if i in set(reader.stored_checkpoints)]
        if stored:
            q = _stored_quantised(reader, stored[0], section)
            if isinstance(q, str):
                problem = f"checkpoint {stored[0]}: {q}"
            elif q[0] != section.layout:
                problem = (f"the committed layout ({len(section.layout.names)} tensors, {section.layout.total} "
                           f"values) is not checkpoint {stored[0]}'s ({len(q[0].names)} tensors, {q[0].total})")
    total = len(section.commitments) * len(section.commitments[0].chunks)
    if not problem and total > policy.max_commitments:
        result.add("zk.points", False, f"{total} commitments",
                   f"more than the {policy.max_commitments} commitments the verifier decodes (policy max_commitments)")
        return False
    if problem:
        result.add("zk.binding", False, "layout" if not outside else "not in the chain", problem)
        return False
    return True


def _stored_quantised(reader: Any, index: int, section: ZkSection) -> tuple[Any, np.ndarray, int] | str:
    """The quantisation of stored checkpoint ``index``, or why it has none: a checkpoint holding
    NaN (an edited file, or a diverged run) cannot be what any commitment opens to."""
    try:
        return quantised(model_tensors(reader.checkpoint_state(index)), section.params)
    except ValueError as exc:
        return f"its weights have no quantisation ({exc})"


# --------------------------------------------------------------------------- 3. curve work


def _points_check(result: ZkResult, committer: Committer, section: ZkSection) -> bool:
    bad_roots = [section.checkpoints[i] for i, (c, r) in enumerate(zip(section.commitments, section.stored_roots))
                 if c.root != r]
    n = len(section.commitments)
    result.add("zk.merkle_roots", not bad_roots, f"{n - len(bad_roots)}/{n}",
               "stored roots recompute from the chunk commitments" if not bad_roots
               else f"mismatch at checkpoint(s) {bad_roots[:8]}")
    be = committer.backend
    bad = total = 0
    for com in section.commitments:
        for c in com.chunks:
            total += 1
            try:
                be.decode(c)
            except ZkFormatError:
                bad += 1
    result.add("zk.points", bad == 0, f"{total - bad}/{total}",
               "every commitment is a point of the prime-order subgroup of G1" if not bad
               else f"{bad} commitment(s) are off the curve or outside the subgroup")
    return bad == 0


def _binding_check(result: ZkResult, reader: Any, committer: Committer, section: ZkSection, policy: ZkPolicy,
                   sample: int | None, seed: int | None, targets: set[int]) -> tuple[set[int], set[int], dict[int, str]]:
    """Check commitments against the stored checkpoints; return (bound, unbound, failed -> why)."""
    from verifier.sampling import detection_probability

    stored = set(reader.stored_checkpoints)
    bindable = [i for i in section.checkpoints if i in stored]
    unbound = {i for i in section.checkpoints if i not in stored}
    if not bindable:
        result.add("zk.binding", None, f"0/{len(section.checkpoints)} checkpoints",
                   "unbound: this file stores none of the committed checkpoints, so nothing ties the commitments "
                   "to the weights the chain hashes (the zk results below are informational)")
        result.info["zk_bound"] = False
        return set(), unbound, {}
    rng = np.random.default_rng(seed)
    chosen = _sample(bindable, sample, rng)
    chosen = sorted(set(chosen) | (targets & set(bindable)))
    bound: set[int] = set()
    bad: dict[int, str] = {}
    clipped: dict[int, int] = {}
    for i in chosen:
        q = _stored_quantised(reader, i, section)
        if isinstance(q, str):
            bad[i] = q
            continue
        layout, values, clip = q
        k = section.checkpoints.index(i)
        if layout != section.layout:
            bad[i] = "its tensors do not have the committed layout"
            continue
        try:
            verify_binding(committer, checkpoint_context(reader, i), section.commitments[k], values,
                           section.binding_proofs[k])
        except ProofRejected:
            bad[i] = "its commitment does not open to the quantised stored checkpoint"
            continue
        bound.add(i)
        clipped[i] = clip
    figure = f"{len(bound)}/{len(chosen)} checkpoints"
    if len(chosen) < len(bindable):
        p = detection_probability(len(bindable), len(chosen) - len(targets & set(bindable)), 0.1)
        figure += f" (verifier-random sample of {len(bindable)}; P(catch 10% unbound) = {p:.3f})"
    if unbound:
        figure += f"; {len(unbound)} not stored (unbound)"
    if bad:
        first = min(bad)
        detail = f"checkpoint {first}: {bad[first]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
    else:
        detail = ("every checked commitment opens to the quantisation of the stored checkpoint, and the binding "
                  "proof names the run, the checkpoint index and its chain state digest")
    result.add("zk.binding", not bad, figure, detail)
    result.info["zk_bound"] = not bad
    if unbound:
        result.info["zk_unbound_checkpoints"] = sorted(unbound)
    if not bad:
        _quantisation_check(result, section, policy, clipped)
    return bound, unbound, bad


def _sample(population: Sequence[int], k: int | None, rng: np.random.Generator) -> list[int]:
    if k is None or k >= len(population):
        return list(population)
    return sorted(int(x) for x in rng.choice(np.asarray(population), size=k, replace=False))


def _quantisation_check(result: ZkResult, section: ZkSection, policy: ZkPolicy, clipped: dict[int, int]) -> None:
    """Clipping recomputed from the stored weights: a committed value clipped is a weight not represented."""
    signed = dict(zip(section.checkpoints, section.clipped))
    wrong = [i for i, c in clipped.items() if signed[i] != c]
    over = [i for i, c in clipped.items() if c > policy.max_clipped]
    worst = max(clipped.values(), default=0)
    p = section.params
    if wrong:
        detail = f"checkpoint {wrong[0]}: {clipped[wrong[0]]} values clip, the section says {signed[wrong[0]]}"
    elif over:
        detail = (f"checkpoint {over[0]} clips {clipped[over[0]]} values outside +-2^{p.bits - 1 - p.scale_bits}: "
                  f"the commitment does not represent those weights (at most {policy.max_clipped} allowed)")
    else:
        detail = (f"scale 2^-{p.scale_bits}, {p.bits}-bit signed: {section.length} values per checkpoint, "
                  "recounted from the stored weights")
    result.add("zk.quantisation", not wrong and not over, f"{worst} clipped (max {policy.max_clipped})", detail)


# --------------------------------------------------------------------------- 4. ownership and openings


def _scope(checkpoint: int, bound: set[int], unbound: set[int], bad: dict[int, str]) -> tuple[bool | None, str]:
    """(False, why) if the checkpoint's binding failed, (None, why) if unbound, (True, "") if bound."""
    if checkpoint in bad:
        return False, f"checkpoint {checkpoint}: {bad[checkpoint]}"
    if checkpoint in unbound or checkpoint not in bound:
        return None, (f"unbound: this file does not store checkpoint {checkpoint}, so the proof is about the "
                      "commitment only, not about the weights the chain hashes")
    return True, ""


def _ownership_check(committer: Committer, section: ZkSection, own: OwnershipProof, challenge: bytes,
                     bound: set[int], unbound: set[int], bad: dict[int, str]) -> dict[str, Any]:
    name, figure = "zk.ownership", f"checkpoint {own.checkpoint}"

    def out(passed: bool | None, detail: str) -> dict[str, Any]:
        return {"name": name, "passed": passed, "figure": figure, "detail": detail}

    if own.run_id != section.run_id:
        return out(False, "the ownership proof is for another run")
    if own.challenge != challenge:
        return out(False, "the ownership proof answers a different challenge")
    if own.genset_id != section.params.genset_id:
        return out(False, "the proof uses another generator set")
    if own.checkpoint not in section.checkpoints:
        return out(False, "that checkpoint is not committed in /zk")
    scope, why = _scope(own.checkpoint, bound, unbound, bad)
    if scope is False:
        return out(False, why)
    try:
        verify_opening(committer, Context(section.run_id, own.checkpoint), section.commitment_for(own.checkpoint),
                       own.proof, challenge=challenge)
    except ProofRejected as exc:
        return out(False, str(exc))
    if scope is None:
        return out(None, "the prover knows an opening of the commitment; " + why)
    return out(True, "the prover knows the quantised stored checkpoint and its blindings (challenge-bound)")


def _openings_check(reader: Any, committer: Committer, section: ZkSection, doc: tuple[bytes, int, list[Any]],
                    bound: set[int], unbound: set[int], bad: dict[int, str]) -> dict[str, Any]:
    run_id, ckpt, openings = doc
    name = "zk.openings"
    figure = f"{len(openings)} chunk(s) of checkpoint {ckpt}"

    def out(passed: bool | None, detail: str) -> dict[str, Any]:
        return {"name": name, "passed": passed, "figure": figure, "detail": detail}

    if run_id != section.run_id:
        return out(False, "the openings are for another run")
    if ckpt not in section.checkpoints:
        return out(False, "that checkpoint is not committed in /zk")
    if not openings:
        return out(False, "the document opens no chunk")
    indices = [op.index for op in openings]
    if len(set(indices)) != len(indices) or len(indices) > len(section.commitment_for(ckpt).chunks):
        return out(False, "the document opens a chunk twice (each opening costs the verifier a commitment)")
    scope, why = _scope(ckpt, bound, unbound, bad)
    if scope is False:
        return out(False, why)
    com = section.commitment_for(ckpt)
    m = section.params.chunk_size
    stored = quantised(model_tensors(reader.checkpoint_state(ckpt)), section.params)[1] if scope else None
    for op in openings:
        try:
            if not 0 <= op.index < len(com.chunks) or op.commitment != com.chunks[op.index]:
                raise ProofRejected(f"chunk {op.index}'s commitment is not the one in /zk")
            expected = min(m, section.length - op.index * m)
            if len(op.values) != expected:
                raise ProofRejected(f"chunk {op.index} reveals {len(op.values)} values, expected {expected}")
            verify_chunk_opening(committer, com.root, len(com.chunks), op)
            if stored is not None and list(op.values) != stored[op.index * m: op.index * m + expected].tolist():
                raise ProofRejected(f"chunk {op.index}'s values are not the stored checkpoint's")
        except ProofRejected as exc:
            return out(False, str(exc))
    if scope is None:
        return out(None, "the revealed chunks match their commitments; " + why)
    return out(True, "the revealed chunks are the stored checkpoint's quantised weights, under their commitments")


__all__ = ["ZkResult", "verify_zk_section"]
