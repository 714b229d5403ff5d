"""Nodes that fail attestation (SIMULATED TEE) in a ``pol split train --attest`` run: each one is a
real pipeline process (``--node-impl scripts.attacks_split.attestation:DebugEnclaveNode``) that
lies about one thing in its quote. The checker must refuse it, name it, and the run must stop
before the plan is signed (no node proof is written).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from certify.attestation import NodeClaims, attest_node, launch_node_enclave
from certify.pipeline_attestation import stage_specs_of
from pol.split.node import NodeRuntime


def _quote(platform: Any, plan: Any, rank: int, public_key: bytes, nonce: bytes, *, specs: Any = None,
           debug: bool = False) -> bytes:
    enclave = launch_node_enclave(platform, specs if specs is not None else stage_specs_of(plan, rank), debug=debug)
    return attest_node(enclave, NodeClaims(rank, tuple(plan.node_stages(rank)), public_key, plan.digest()),
                       nonce).to_bytes()


class DebugEnclaveNode(NodeRuntime):
    """Runs its enclave in debug mode (its memory is readable by the host): ``debug_enclave``."""

    def attestation_answer(self, platform: Any, plan: Any, nonce: bytes) -> tuple[bytes, bytes]:
        return nonce, _quote(platform, plan, self.rank, bytes(self.key.verify_key), nonce, debug=True)


class WrongMeasurementNode(NodeRuntime):
    """Runs another stage's code and configuration (the next stage's spec, or a changed learning
    rate) than the plan gives it: ``mr_enclave_not_allowed``."""

    def attestation_answer(self, platform: Any, plan: Any, nonce: bytes) -> tuple[bytes, bytes]:
        specs = stage_specs_of(plan, self.rank)
        specs[0] = {**specs[0], "lr_schedule": {**specs[0]["lr_schedule"], "lr": 10.0}}
        return nonce, _quote(platform, plan, self.rank, bytes(self.key.verify_key), nonce, specs=specs)


class ReplayedQuoteNode(NodeRuntime):
    """Ignores the checker's nonce and sends the quote it gave in an earlier run (read from that
    run's ``attestation.json``, ``replay_from``): a stale nonce, ``nonce_replayed``."""

    def __init__(self, *args: Any, replay_from: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.replay_from = Path(replay_from)

    def attestation_answer(self, platform: Any, plan: Any, nonce: bytes) -> tuple[bytes, bytes]:
        old = json.loads(self.replay_from.read_text())
        mine = next(n for n in old["nodes"] if n["rank"] == self.rank)
        return bytes.fromhex(mine["nonce"]), bytes.fromhex(mine["quote"])


class OtherKeyNode(NodeRuntime):
    """Its enclave's quote binds a key other than the one that signs its proof (the enclave is
    attested, but the proof's signer is a key outside it): ``report_data_mismatch``."""

    def attestation_answer(self, platform: Any, plan: Any, nonce: bytes) -> tuple[bytes, bytes]:
        return nonce, _quote(platform, plan, self.rank, bytes(SigningKey.generate().verify_key), nonce)
