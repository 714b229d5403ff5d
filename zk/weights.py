"""Commit to a state dict and check the commitment against tensors: the unit every zk use builds on.

A trainer (or a split-learning node) commits its weights and publishes a
:class:`WeightsCommitment`: chunk commitments plus a binding proof. Whoever later holds the
tensors the commitment is meant to cover (a verifier reading the proof's checkpoints, a
coordinator given a node's final weights) checks with :func:`verify_weights_binding` that the
commitment opens to exactly their quantisation, without learning the blindings::

    from zk import Context, Params, ZkPolicy, commit_weights, verify_weights_binding

    ctx = Context(run_id=plan_digest, checkpoint=7, state_digest=chain_state_digest)
    wc, blindings = commit_weights(model_tensors, ctx)         # keep the blindings private
    verify_weights_binding(model_tensors, wc, ctx)             # raises ProofRejected if not bound

The context (run id, checkpoint index and the digest the caller binds, e.g. the chain's state
digest) enters the proof's transcript, so a commitment does not move to another run,
checkpoint or state. Only ``float`` tensors are committed, in name order (see
:mod:`zk.quantize`); the verifier pins the precision and generator parameters with a
:class:`~zk.policy.ZkPolicy`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from zk.backend import Backend, get_backend
from zk.errors import ProofRejected
from zk.pedersen import Committer, Params, VectorCommitment
from zk.policy import ZkPolicy
from zk.quantize import Layout, flatten
from zk.sigma import BindingProof, Context, prove_binding, verify_binding


@dataclass(frozen=True)
class WeightsCommitment:
    """A commitment to quantised weights, with the proof that it opens to them."""

    params: Params
    layout: Layout
    commitment: VectorCommitment
    binding: BindingProof
    clipped: int


def float_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The float tensors of a state dict (what gets committed)."""
    return {k: np.asarray(v) for k, v in tensors.items() if np.asarray(v).dtype.kind == "f"}


def commit_weights(
    tensors: Mapping[str, np.ndarray],
    context: Context,
    *,
    params: Params | None = None,
    committer: Committer | None = None,
    backend: Backend | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[WeightsCommitment, list[int]]:
    """Commit the float tensors of ``tensors``; return the commitment and its secret blindings."""
    c = committer or Committer(params or Params(), backend or get_backend(), cache_dir)
    floats = float_tensors(tensors)
    if not floats:
        raise ValueError("no float tensors to commit")
    layout, com, blindings, _, clipped = c.commit_tensors(floats)
    return WeightsCommitment(c.params, layout, com, prove_binding(c, context, com, blindings), clipped), blindings


def quantised(tensors: Mapping[str, np.ndarray], params: Params) -> tuple[Layout, np.ndarray, int]:
    """``(layout, integer vector, clipped count)`` of the float tensors, as a commitment holds them."""
    return flatten(float_tensors(tensors), params.quantizer)


def verify_weights_binding(
    tensors: Mapping[str, np.ndarray],
    wc: WeightsCommitment,
    context: Context,
    *,
    policy: ZkPolicy | None = None,
    committer: Committer | None = None,
    backend: Backend | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Raise :class:`ProofRejected` unless ``wc`` commits to exactly these tensors, quantised.

    Checks the parameters against ``policy`` first (no generator is derived for parameters
    the verifier did not pin), then the layout, then the binding proof. Returns the number of
    values the quantisation clipped (recomputed here, not taken from ``wc``).
    """
    problems = (policy or ZkPolicy()).problems(wc.params)
    if problems:
        raise ProofRejected("parameters not accepted: " + "; ".join(problems))
    layout, values, clipped = quantised(tensors, wc.params)
    if layout != wc.layout:
        raise ProofRejected(f"the commitment covers {len(wc.layout.names)} tensors of {wc.layout.total} values; "
                            f"the tensors given are {len(layout.names)} of {layout.total}")
    c = committer or Committer(wc.params, backend or get_backend(), cache_dir)
    if c.params != wc.params:
        raise ValueError("the committer's parameters differ from the commitment's")
    verify_binding(c, context, wc.commitment, values, wc.binding)
    return clipped


__all__ = ["WeightsCommitment", "commit_weights", "verify_weights_binding", "quantised", "float_tensors"]
