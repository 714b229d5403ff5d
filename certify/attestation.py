"""Attested pipeline nodes (SIMULATED TEE: ``tee_sim``; proves nothing about real hardware).

Before the pipeline plan is signed, every node attests. Its enclave's **measurement** covers what
the node will run: the project's modules (a :class:`tee_sim.CodeImage`, their bytes hashed) and a
configuration naming the project, its version and the node's stage specs. Its quote's **report
data** binds, to a fresh nonce from the party that checks it, the claims::

    {"purpose": "pol-node-attestation-v1", "rank": r, "stages": "0,2",
     "node_public_key": <hex Ed25519 key that will sign the node's proof>,
     "plan_digest": <hex pipeline plan digest>}

The checking party (:class:`NodeAttestationVerifier`) pins the simulated vendor root, keeps its
own collateral store and nonce registry, and expects **one measurement per node**, computed
itself from its own checkout and the plan's stage specs (:func:`expected_measurement`). A quote
passes only as ``accepted (simulated)``: pinned root, no debug, TCB up to date (by policy),
that node's measurement, report data binding that node's key, plan digest and stages to the
nonce this verifier issued, used once. :meth:`NodeAttestationVerifier.admit` raises
:class:`NodeNotAttested` naming every node that fails (the pipeline must not start).

Pipeline wiring (for ``pol split``): call :meth:`~NodeAttestationVerifier.admit` in the plan
agreement's ``approve(plan)`` hook, before any node signs, with ``NodeClaims`` built from the
plan (each node's public key and stages, ``plan.digest()``), and put the returned
:class:`NodeAttestation` records into the pipeline certificate (docs/CERTIFY.md).
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pol.errors import PolError
from tee_sim import (
    AttestationPolicy,
    AttestationResult,
    AttestationVerifier,
    CodeImage,
    Collateral,
    CollateralStore,
    Enclave,
    NonceRegistry,
    Quote,
    SimulatedPlatform,
    TcbStatus,
)

PURPOSE = "pol-node-attestation-v1"
NODE_ROLE = "pol-split-node"
#: Modules a node's enclave measures (with every first-party module they import at module level):
#: the split pipeline's node entry point, its training engine, link and proof writer, and the
#: recorder and replay they share with single-process runs.
NODE_MODULES: tuple[str, ...] = ("pol.split.node", "pol.split.engine", "pol.split.comm", "pol.split.proof",
                                 "pol.recorder", "pol.replay")


def project_version() -> str:
    try:
        return importlib.metadata.version("proof-of-learning")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def node_config(stage_specs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The measured configuration of a node: the project, its version and its stage specs."""
    return {"role": NODE_ROLE, "project": "proof-of-learning", "version": project_version(),
            "stages": [dict(s) for s in stage_specs]}


def node_image(modules: Sequence[str] = NODE_MODULES) -> CodeImage:
    """The measured code image (cached per process: hashing the import closure takes ~1 s)."""
    return _image(tuple(modules))


@functools.lru_cache(maxsize=8)
def _image(modules: tuple[str, ...]) -> CodeImage:
    return CodeImage.of_modules(list(modules))


def expected_measurement(stage_specs: Sequence[Mapping[str, Any]], *, image: CodeImage | None = None,
                         modules: Sequence[str] = NODE_MODULES) -> bytes:
    """The ``mr_enclave`` a node running ``stage_specs`` must show (computed by the checker itself)."""
    return (image or node_image(modules)).measurement(node_config(stage_specs))


def launch_node_enclave(platform: SimulatedPlatform, stage_specs: Sequence[Mapping[str, Any]], *,
                        image: CodeImage | None = None, modules: Sequence[str] = NODE_MODULES,
                        isv_svn: int = 0, debug: bool = False, **launch: Any) -> Enclave:
    """The node's side: an attest-only enclave measuring the node's code and stage specs."""
    return platform.launch(image or node_image(modules), config=node_config(stage_specs), isv_svn=isv_svn,
                           debug=debug, **launch)


@dataclass(frozen=True)
class NodeClaims:
    """What a node's quote binds: its rank and stages, its proof-signing key, the pipeline plan."""

    rank: int
    stages: tuple[int, ...]
    node_public_key: bytes
    plan_digest: bytes

    def __post_init__(self) -> None:
        if len(self.node_public_key) != 32 or len(self.plan_digest) != 32:
            raise ValueError("node_public_key and plan_digest are 32 bytes")
        if self.rank < 0 or not self.stages or any(s < 0 for s in self.stages):
            raise ValueError("a node has a non-negative rank and at least one stage")

    def report_fields(self) -> dict[str, str | int]:
        return {"purpose": PURPOSE, "rank": self.rank, "stages": ",".join(str(s) for s in self.stages),
                "node_public_key": self.node_public_key.hex(), "plan_digest": self.plan_digest.hex()}


def attest_node(enclave: Enclave, claims: NodeClaims, nonce: bytes) -> Quote:
    """The node's side: a quote binding ``claims`` to the checker's ``nonce``."""
    return enclave.attest(claims.report_fields(), nonce=nonce)


@dataclass(frozen=True)
class NodeAttestation:
    """One node's attestation as judged, for the pipeline certificate."""

    claims: NodeClaims
    nonce: bytes
    quote: bytes
    expected_mr_enclave: bytes
    verdict: str
    reasons: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return self.verdict == "accepted (simulated)"

    def to_json(self) -> dict[str, Any]:
        return {"simulated": True, "rank": self.claims.rank, "stages": list(self.claims.stages),
                "node_public_key": self.claims.node_public_key.hex(), "plan_digest": self.claims.plan_digest.hex(),
                "nonce": self.nonce.hex(), "quote": self.quote.hex(),
                "expected_mr_enclave": self.expected_mr_enclave.hex(), "verdict": self.verdict,
                "reasons": list(self.reasons)}


class NodeNotAttested(PolError):
    """One or more nodes failed attestation: the pipeline must not start. Names every one."""

    def __init__(self, failures: Mapping[int, Sequence[str]]):
        self.failures = {r: tuple(v) for r, v in failures.items()}
        super().__init__("; ".join(f"node {r} failed attestation (simulated TEE): {', '.join(v)}"
                                   for r, v in sorted(self.failures.items())))


@dataclass
class NodePolicy:
    """What the checker accepts, per node: its expected measurement, plus the usual TEE policy."""

    expected: Mapping[int, bytes]                      # rank -> mr_enclave
    allowed_tcb_statuses: frozenset[TcbStatus] = frozenset({TcbStatus.UP_TO_DATE})
    min_isv_svn: int = 0
    allow_debug: bool = False
    require_hardware: bool = False
    min_tcb_evaluation_data_number: int = 0
    extra: dict[str, Any] = field(default_factory=dict)   # other AttestationPolicy fields

    def for_node(self, rank: int) -> AttestationPolicy:
        if rank not in self.expected:
            raise KeyError(rank)
        return AttestationPolicy(allowed_mr_enclave={self.expected[rank]}, allowed_tcb_statuses=self.allowed_tcb_statuses,
                                 min_isv_svn=self.min_isv_svn, allow_debug=self.allow_debug,
                                 require_hardware=self.require_hardware,
                                 min_tcb_evaluation_data_number=self.min_tcb_evaluation_data_number, **self.extra)


class NodeAttestationVerifier:
    """The party that admits nodes: pinned root, its own collateral and nonces, a per-node policy."""

    def __init__(self, *, root_public_key: bytes, collateral: Collateral | CollateralStore, nonces: NonceRegistry,
                 policy: NodePolicy, clock: Any = None):
        self.root_public_key, self.collateral, self.nonces, self.policy = root_public_key, collateral, nonces, policy
        self._clock = clock

    def issue_nonce(self) -> bytes:
        return self.nonces.issue()

    def verify(self, quote: Quote | bytes, claims: NodeClaims, nonce: bytes) -> AttestationResult:
        """Judge one node's quote against the claims the checker expects of it (from the plan)."""
        kwargs: dict[str, Any] = {"clock": self._clock} if self._clock is not None else {}
        verifier = AttestationVerifier(root_public_key=self.root_public_key, collateral=self.collateral,
                                       policy=self.policy.for_node(claims.rank), nonces=self.nonces, **kwargs)
        return verifier.verify(quote, nonce=nonce, report_fields=claims.report_fields())

    def admit(self, answers: Mapping[int, tuple[Quote | bytes, NodeClaims, bytes]]) -> list[NodeAttestation]:
        """Judge every node's ``(quote, expected claims, nonce)``; raise :class:`NodeNotAttested`
        naming each node that fails (or that the policy expects and did not answer)."""
        out, failures = [], {}
        for rank in sorted(set(self.policy.expected) - set(answers)):
            failures[rank] = ["no_quote"]
        for rank, (quote, claims, nonce) in sorted(answers.items()):
            if claims.rank != rank:
                failures[rank] = ["claims_name_another_rank"]
                continue
            if rank not in self.policy.expected:
                failures[rank] = ["not_in_the_plan"]
                continue
            result = self.verify(quote, claims, nonce)
            reasons = tuple(r.value for r in result.reasons)
            raw = quote.to_bytes() if isinstance(quote, Quote) else bytes(quote)
            out.append(NodeAttestation(claims, nonce, raw, self.policy.expected[rank], result.verdict, reasons))
            if not result.accepted_simulated:
                failures[rank] = list(reasons)
        if failures:
            raise NodeNotAttested(failures)
        return out
