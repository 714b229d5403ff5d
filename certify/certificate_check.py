"""Checking a pipeline certificate (``pol split verify-certificate CERT``): per node, five checks.

* ``proof``: the node proof beside the certificate is node ``r``'s, signed by the key the entry
  names, for the certificate's plan, and its plan signatures, chain and final signature verify;
  its chain head and final-weights digest are the entry's;
* ``attestation`` (SIMULATED TEE): the recorded quote is re-judged here: under the vendor root the
  reader pins (``--tee-root``), with the vendor-signed collateral the certificate carries, the
  measurement this checker computes itself from the plan's stage specs, no debug, TCB up to date,
  and report data binding the entry's rank, stages, key and the plan digest to the recorded
  nonce. (Whether that nonce was fresh only the live checker knew; the plan digest carries node
  0's random pipeline nonce, so the quote is specific to this run.) Without ``--tee-root`` the
  check does not run (a root named by the certificate itself proves nothing);
* ``commitment``: the final-weights commitment is bound to the node's signed chain and opens to
  the final weights in its proof (:func:`certify.node_commitment.audit_node_commitment`);
* ``transcript``: the headers the node's neighbours recorded of its messages equal what the node
  recorded sending (``verifier.split``'s ``sent_consistency``);
* ``quorum``: the votes embedded in the certificate, re-tallied here
  (:func:`verifier.quorum.tally`) with the verifier list and ``f`` the reader pins
  (``--verifiers``, ``--f``), rejection evidence re-checked by replay, and the certificate's own
  recorded decision must agree. Without ``--verifiers`` the check does not run.

Verdict: ``verified`` only when every check of every node passed; ``rejected`` when one failed;
``incomplete`` when one could not run.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from verifier.report import Check, Report

CHECK_NAMES = ("proof", "attestation", "commitment", "transcript", "quorum")


def recorded_nonce(nonce: bytes) -> Any:
    """A nonce registry that knows exactly one nonce: the one a recorded quote answered
    (re-judging a quote after the fact; freshness was the live checker's to see)."""
    from tee_sim import NonceRegistry, NonceStatus

    class RecordedNonce(NonceRegistry):
        def peek(self, candidate: bytes) -> NonceStatus:
            return NonceStatus.FRESH if bytes(candidate) == nonce else NonceStatus.UNKNOWN

        consume = peek

    return RecordedNonce()


@dataclass
class CertificateReport:
    path: str
    digest: str = ""
    nodes: dict[int, dict[str, Check]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    node_info: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, rank: int, name: str, passed: bool | None, figure: str = "", detail: str = "") -> None:
        self.nodes.setdefault(rank, {})[name] = Check(f"node{rank}.{name}", passed, figure, detail)

    def report(self) -> Report:
        rep = Report(self.path, info={"certificate_digest": self.digest, **self.info,
                                      "nodes": [{"rank": r, **self.node_info.get(r, {}),
                                                 "checks": {n: c.passed for n, c in checks.items()}}
                                                for r, checks in sorted(self.nodes.items())]})
        for _, checks in sorted(self.nodes.items()):
            rep.extend(list(checks.values()))
        return rep

    def render(self, out: TextIO | None = None) -> None:
        from pol.terminal import printable

        out = out or sys.stderr
        rep = self.report()
        out.write(f"pipeline certificate (SIMULATED TEE): {printable(self.path)}\n  digest {self.digest}\n")
        for key in ("plan_digest", "tee_root", "verifiers"):
            if key in self.info:
                out.write(f"  {key.replace('_', ' ')}: {printable(self.info[key])}\n")
        head = f"  {'node':<5}{'stages':<8}{'key':<18}" + "".join(f"{n:<13}" for n in CHECK_NAMES)
        out.write(head.rstrip() + "\n")
        mark = {True: "PASS", False: "FAIL", None: "SKIP"}
        for rank, checks in sorted(self.nodes.items()):
            ni = self.node_info.get(rank, {})
            row = f"  {rank:<5}{printable(ni.get('stages', '')):<8}{printable(ni.get('key', ''))[:16]:<18}"
            row += "".join(f"{mark[checks[n].passed] if n in checks else '-':<13}" for n in CHECK_NAMES)
            out.write(row.rstrip() + "\n")
        for c in rep.checks:
            if c.passed is not True:
                out.write(f"  {mark[c.passed]}  {printable(c.name)}: {printable(c.figure)} {printable(c.detail)}\n")
        out.write(f"verdict: {rep.verdict.upper()}\n")


def check_certificate(path: str | os.PathLike[str], *, tee_root: bytes | None = None,
                      verifiers: list[bytes] | None = None, f: int | None = None,
                      data: str | None = None, device: str = "auto") -> CertificateReport:
    """Check the certificate at ``path`` against the node proofs beside it (InputError: exit 2)."""
    from pol.errors import InputError
    from pol.split.proof import NodeProofReader
    from verifier.split.api import neighbour_headers

    from certify.pipeline_certificate import certificate_digest, read_certificate

    cert = read_certificate(path)
    run = Path(path).parent
    digest = certificate_digest(cert)
    out = CertificateReport(str(path), digest.hex())
    out.info.update({"plan_digest": cert["pipeline"]["plan_digest"], "simulated_tee": True,
                     "tee_root": tee_root.hex() if tee_root else "not pinned (--tee-root)",
                     "verifiers": f"{len(verifiers)} pinned, f={f}" if verifiers else "not pinned (--verifiers)"})
    readers: dict[int, Any] = {}
    try:
        for node in cert["nodes"]:
            p = run / node["proof"]
            if not p.is_file():
                raise InputError(f"{p} is missing: the node proofs must lie beside the certificate")
            readers[node["rank"]] = NodeProofReader(p)
        headers = neighbour_headers(readers)
        plan = None
        for node in cert["nodes"]:
            rank, reader = node["rank"], readers[node["rank"]]
            out.node_info[rank] = {"stages": ",".join(str(s) for s in node["stages"]), "key": node["public_key"]}
            ok, figure, detail = _proof_check(reader, node, cert)
            out.add(rank, "proof", ok, figure, detail)
            plan = reader.plan if ok else plan
            out.add(rank, "attestation", *_attestation_check(node, reader.plan, cert, tee_root))
            out.add(rank, "commitment", *_commitment_check(reader, node))
            from verifier.split import integrity

            sent = integrity.sent_consistency_check(reader, headers[rank])
            out.add(rank, "transcript", sent.passed, sent.figure, sent.detail)
        _quorum_checks(out, cert, run, digest, verifiers, f, data, device)
    finally:
        for r in readers.values():
            r.close()
    return out


def _proof_check(reader: Any, node: dict[str, Any], cert: dict[str, Any]) -> tuple[bool, str, str]:
    from verifier.split import integrity

    problems = []
    if reader.rank != node["rank"]:
        problems.append(f"the file is node {reader.rank}'s proof")
    if reader.signer_public_key.hex() != node["public_key"] or reader.plan.public_key(reader.rank).hex() != node["public_key"]:
        problems.append("signed by another key than the entry names")
    if reader.plan_digest.hex() != cert["pipeline"]["plan_digest"]:
        problems.append("for another plan than the certificate's")
    if reader.plan.num_nodes != cert["pipeline"]["num_nodes"] or reader.plan.node_stages(reader.rank) != node["stages"]:
        problems.append("the plan gives this node other stages or another pipeline")
    if reader.final is None or reader.final["chain_head"].hex() != node["chain_head"] or \
            reader.final["final_weights_digest"].hex() != node["final_weights_digest"]:
        problems.append("its signed chain head or final-weights digest differs from the entry's")
    chain, final_weights = integrity.chain_check(reader)
    for check in (integrity.plan_signatures_check(reader), chain, integrity.final_signature_check(reader, final_weights)):
        if not check.passed:
            problems.append(f"{check.name}: {check.detail or check.figure}")
    if problems:
        return False, "does not match", "; ".join(problems)[:600]
    return True, "signatures, chain, head and weights digest match", ""


def _attestation_check(node: dict[str, Any], plan: Any, cert: dict[str, Any],
                       tee_root: bytes | None) -> tuple[bool | None, str, str]:
    from tee_sim import AttestationVerifier, Collateral, QuoteFormatError
    from tee_sim.errors import TeeInputError

    from certify.attestation import NodeClaims
    from certify.pipeline_attestation import node_policy

    rec = node["attestation"]
    if tee_root is None:
        return None, "not run", "pass --tee-root to pin the simulated vendor root"
    try:
        claims = NodeClaims(int(rec["rank"]), tuple(int(s) for s in rec["stages"]), bytes.fromhex(rec["node_public_key"]),
                            bytes.fromhex(rec["plan_digest"]))
        nonce, quote = bytes.fromhex(rec["nonce"]), bytes.fromhex(rec["quote"])
    except (KeyError, ValueError, TypeError):
        return False, "malformed", "the attestation record is malformed"
    expected = NodeClaims(node["rank"], tuple(node["stages"]), bytes.fromhex(node["public_key"]), plan.digest())
    if claims != expected or plan.digest().hex() != cert["pipeline"]["plan_digest"]:
        return False, "claims differ", "the recorded claims are not this node's rank, stages, key and plan"
    try:
        collateral = Collateral.from_bytes(bytes.fromhex(cert["tee"]["collateral"]))
        policy = node_policy(plan).for_node(node["rank"])
        result = AttestationVerifier(root_public_key=tee_root, collateral=collateral, policy=policy,
                                     nonces=recorded_nonce(nonce)).verify(quote, nonce=nonce,
                                                                         report_fields=expected.report_fields())
    except (QuoteFormatError, TeeInputError, ValueError) as exc:
        return False, "malformed", f"quote or collateral: {str(exc)[:200]}"
    if not result.accepted_simulated:
        return False, "rejected", "re-judged here: " + ", ".join(r.value for r in result.reasons)
    return True, "accepted (simulated)", ""


def _commitment_check(reader: Any, node: dict[str, Any]) -> tuple[bool, str, str]:
    from certify.commitment import FinalWeightsCommitment
    from certify.node_commitment import audit_node_commitment
    from verifier import untrusted_json as uj

    try:
        fwc = FinalWeightsCommitment.from_json(node["weights_commitment"], f"node {node['rank']} weights commitment")
    except uj.DocumentError as exc:
        return False, "malformed", str(exc)[:300]
    if fwc.binding.chain_head.hex() != node["chain_head"]:
        return False, "not bound to the entry", "the commitment names another chain head than the entry"
    audit = audit_node_commitment(reader, fwc)
    return audit.opened, "opens to the final weights" if audit.opened else "does not open", "" if audit.opened \
        else audit.reason


def _quorum_checks(out: CertificateReport, cert: dict[str, Any], run: Path, digest: bytes,
                   verifiers: list[bytes] | None, f: int | None, data: str | None, device: str) -> None:
    from verifier import untrusted_json as uj
    from verifier.quorum import tally
    from verifier.vote import parse_vote

    from certify.node_votes import NodeRechecker, for_node, node_subject

    quorum = cert.get("quorum")
    ranks = [n["rank"] for n in cert["nodes"]]
    if quorum is None:
        for rank in ranks:
            out.add(rank, "quorum", False, "no quorum section", "the certificate carries no votes")
        return
    if verifiers is None or f is None:
        for rank in ranks:
            out.add(rank, "quorum", None, "not run", "pass --verifiers and --f to pin the verifier quorum")
        return
    votes, bad = [], []
    for i, doc in enumerate(quorum["votes"]):
        try:
            votes.append(parse_vote(doc if isinstance(doc, dict) else {}, f"certificate vote {i}"))
        except uj.DocumentError as exc:
            bad.append((f"certificate vote {i}", f"malformed: {exc}"))
    out.info["quorum"] = {}
    for rank in ranks:
        rechecker = NodeRechecker(run, rank, data=data, device=device)
        try:
            result = tally(node_subject(digest, rank), for_node(votes, digest, rank), verifiers, f, rechecker, bad)
        finally:
            rechecker.close()
        recorded = quorum["decisions"].get(str(rank))
        out.info["quorum"][str(rank)] = result.to_dict()
        passed = result.decision == "accepted" and recorded == "accepted"
        detail = "" if passed else (f"re-tallied here: {result.decision}; the certificate records {recorded!r}; "
                                    + "; ".join(c.detail for c in result.checks() if not c.passed))
        out.add(rank, "quorum", passed, f"{len(result.accepting)}/{result.threshold} valid acceptances, "
                f"{len(result.confirmed_rejections)} confirmed rejection(s), {len(result.ignored)} vote(s) ignored",
                detail[:600])
