"""Attesting the nodes of a split-learning run before step one (SIMULATED TEE; ``pol split train --attest``).

Runs inside the plan agreement (:meth:`pol.split.node.NodeRuntime.approve_plan`), on every node,
after the node's own checks of the plan and before it signs it. Over the process group:

1. the **checker** issues one fresh nonce per node from its nonce registry and broadcasts them;
2. every node launches its attest-only enclave on its (simulated) platform, measuring the
   project's node code and its stage specs, and quotes the claims ``(rank, stages, its
   proof-signing public key, plan digest)`` bound to its nonce; the answers are all-gathered;
3. the checker judges every quote under its own policy (pinned simulated vendor root, its own
   collateral store, no debug, TCB up to date, one measurement per node computed from its own
   checkout and the plan's stage specs, report data binding exactly the plan's claims to the
   nonce issued *to that node*), writes ``RUN/attestation.json`` and broadcasts the verdict;
4. every node raises :class:`~certify.attestation.NodeNotAttested`, naming each failing node,
   unless all were admitted; the run then stops before any node signs the plan.

Who checks: the checking party's state is the ``--attest`` directory (``pol tee init``): the
pinned root ``root.pub``, the collateral store ``collateral-store.json`` and the nonce registry
``nonces.json`` (persistent, so a quote recorded in an earlier run is ``nonce_replayed``). Its
code runs in node 0's process, on the certifier's behalf (no extra process joins the group);
node 0 attests like every other node. ``pol split verify-certificate`` later re-judges the
recorded quotes itself, so a checker that waved a node through is caught there (except for
freshness, which only the live checker sees). Nodes read their simulated platform from
``platform.json`` in the same directory (a simulation: one "machine" for all local nodes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pol.errors import InputError
from pol.hashing import canonical_json
from pol.smallfiles import parse_json

from certify.attestation import (
    NodeAttestation,
    NodeAttestationVerifier,
    NodeClaims,
    NodeNotAttested,
    NodePolicy,
    attest_node,
    expected_measurement,
    launch_node_enclave,
    node_image,
)

ATTESTATION_FILE = "attestation.json"
SCHEMA = "pol-split-attestation-v1"
NONCE_FILE = "nonces.json"
STORE_FILE = "collateral-store.json"
NONCE_TTL_SECONDS = 3600.0


def check_tee_dir(path: str | Path) -> Path:
    """The ``--attest`` directory must hold a ``pol tee init`` state (exit 2 otherwise)."""
    root = Path(path)
    missing = [n for n in ("root.pub", "platform.json", STORE_FILE) if not (root / n).is_file()]
    if missing:
        raise InputError(f"--attest {root}: missing {', '.join(missing)}; create it with `pol tee init --state {root}`")
    return root


def load_platform(tee_dir: Path) -> Any:
    from pol.smallfiles import JSON_FILE_BYTES, read_small_file
    from tee_sim import SimulatedPlatform

    return SimulatedPlatform.from_json(read_small_file(tee_dir / "platform.json", JSON_FILE_BYTES,
                                                       "simulated platform state"))


def pinned_root(tee_dir: Path) -> bytes:
    text = (tee_dir / "root.pub").read_text(encoding="ascii", errors="replace").strip()
    try:
        root = bytes.fromhex(text)
    except ValueError:
        root = b""
    if len(root) != 32:
        raise InputError(f"{tee_dir / 'root.pub'} does not hold a 64-hex-digit simulated vendor root key")
    return root


def stage_specs_of(plan: Any, rank: int) -> list[dict[str, Any]]:
    return [dict(plan.stages[s]) for s in plan.node_stages(rank)]


def node_claims(plan: Any, rank: int) -> NodeClaims:
    """What node ``rank``'s quote must bind, from the plan: its stages, its key, the plan digest."""
    return NodeClaims(rank, tuple(plan.node_stages(rank)), plan.public_key(rank), plan.digest())


def node_policy(plan: Any, image: Any = None) -> NodePolicy:
    """The checker's policy: each node's measurement computed here from the plan's stage specs."""
    image = image or node_image()
    return NodePolicy(expected={r: expected_measurement(stage_specs_of(plan, r), image=image)
                                for r in range(plan.num_nodes)})


def make_checker(tee_dir: Path, plan: Any) -> NodeAttestationVerifier:
    from tee_sim import CollateralStore, NonceRegistry

    root = pinned_root(tee_dir)
    return NodeAttestationVerifier(root_public_key=root, collateral=CollateralStore(tee_dir / STORE_FILE,
                                                                                   root_public_key=root),
                                   nonces=NonceRegistry(ttl_seconds=NONCE_TTL_SECONDS, path=tee_dir / NONCE_FILE),
                                   policy=node_policy(plan))


def honest_answer(platform: Any, plan: Any, rank: int, public_key: bytes, nonce: bytes) -> tuple[bytes, bytes]:
    """The node's side: (nonce answered, quote) for its claims on the checker's ``nonce``."""
    enclave = launch_node_enclave(platform, stage_specs_of(plan, rank))
    claims = NodeClaims(rank, tuple(plan.node_stages(rank)), public_key, plan.digest())
    return nonce, attest_node(enclave, claims, nonce).to_bytes()


def _parse_nonces(raw: bytes, world: int) -> list[bytes]:
    try:
        obj = parse_json(raw, "attestation nonces", ValueError)
        nonces = [bytes.fromhex(h) for h in obj["nonces"]]
        if len(nonces) != world or any(len(n) != 32 for n in nonces):
            raise ValueError
    except (ValueError, TypeError, KeyError):
        from pol.split.messages import MessageRejected

        raise MessageRejected("the checker sent malformed attestation nonces; the run stops") from None
    return nonces


def _parse_answer(raw: bytes) -> tuple[bytes, bytes] | None:
    try:
        obj = parse_json(raw, "attestation answer", ValueError)
        if not isinstance(obj, dict) or set(obj) != {"nonce", "quote"}:
            return None
        return bytes.fromhex(obj["nonce"]), bytes.fromhex(obj["quote"])
    except (ValueError, TypeError):
        return None


def judge_answers(checker: NodeAttestationVerifier, plan: Any, issued: list[bytes],
                  answers: list[tuple[bytes, bytes] | None]) -> tuple[list[NodeAttestation], dict[int, list[str]]]:
    """Judge every node's (nonce answered, quote) against the plan's claims and the nonce issued to it.

    A node answering another nonce than its own (a quote recorded earlier, a nonce of its own
    choosing) fails with the registry's status of that nonce (``nonce_replayed``,
    ``nonce_unknown``, ...) and ``nonce_not_issued_to_this_node``; its quote is still judged
    against the issued nonce (never consuming it), so every other defect is named too."""
    from tee_sim import NonceStatus, QuoteFormatError

    records, failures = [], {}
    for rank, answer in enumerate(answers):
        claims = node_claims(plan, rank)
        if answer is None:
            failures[rank] = ["malformed_answer"]
            continue
        answered, quote = answer
        reasons: list[str] = []
        if answered != issued[rank]:
            status = checker.nonces.peek(answered)
            reasons += ([f"nonce_{status.value}"] if status is not NonceStatus.FRESH else []) \
                + ["nonce_not_issued_to_this_node"]
        try:
            result = checker.verify(quote, claims, issued[rank])
        except QuoteFormatError:
            failures[rank] = reasons + ["malformed_quote"]
            continue
        reasons += [r.value for r in result.reasons if r.value not in reasons]
        verdict = result.verdict if not reasons else "rejected"
        records.append(NodeAttestation(claims, issued[rank], quote, checker.policy.expected[rank], verdict,
                                       tuple(reasons)))
        if reasons:
            failures[rank] = reasons
    return records, failures


def attestation_document(plan: Any, checker: NodeAttestationVerifier, records: list[NodeAttestation],
                         failures: Mapping[int, list[str]]) -> dict[str, Any]:
    """The record of the admission: every quote as judged, and the vendor-signed collateral it was
    judged with (so that anyone can re-judge the quotes later under their own pinned root)."""
    store = checker.collateral
    current = store.current if hasattr(store, "current") else store
    return {"schema": SCHEMA, "simulated": True, "plan_digest": plan.digest().hex(),
            "root_public_key": checker.root_public_key.hex(),
            "collateral": current.to_bytes().hex() if current is not None else None,
            "admitted": not failures, "nodes": [r.to_json() for r in records],
            "failures": {str(r): list(v) for r, v in sorted(failures.items())}}


def write_attestation(out_dir: Path, doc: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ATTESTATION_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(canonical_json(doc))
    os.replace(tmp, path)
    return path


def attest_pipeline(runtime: Any, plan: Any, tee_dir: str | Path) -> None:
    """The whole exchange above; every rank calls it (from ``NodeRuntime.approve_plan``)."""
    from pol.split.comm import all_gather_bytes, broadcast_bytes

    tee = check_tee_dir(tee_dir)
    rank, device, world = runtime.rank, runtime.device, plan.num_nodes
    checker = make_checker(tee, plan) if rank == 0 else None
    issued = [checker.issue_nonce() for _ in range(world)] if checker is not None else None
    raw = broadcast_bytes(canonical_json({"nonces": [n.hex() for n in issued]}) if issued else None, 0, device)
    nonces = _parse_nonces(raw, world)
    answered, quote = runtime.attestation_answer(load_platform(tee), plan, nonces[rank])
    gathered = all_gather_bytes(canonical_json({"nonce": answered.hex(), "quote": quote.hex()}), device)
    verdict = None
    if checker is not None and issued is not None:
        records, failures = judge_answers(checker, plan, issued, [_parse_answer(a) for a in gathered])
        write_attestation(Path(runtime.out_dir), attestation_document(plan, checker, records, failures))
        verdict = canonical_json({"failures": {str(r): v for r, v in failures.items()}})
    decided = broadcast_bytes(verdict, 0, device)
    try:
        failures_in = {int(r): [str(x) for x in v] for r, v in json.loads(decided)["failures"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        from pol.split.messages import MessageRejected

        raise MessageRejected("the checker sent a malformed attestation verdict; the run stops") from None
    if failures_in:
        raise NodeNotAttested(failures_in)
