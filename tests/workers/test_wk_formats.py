"""Frames, round proofs and plans are untrusted input: every defect is a WorkersFormatError
with a reason, never another exception; well-formed ones round-trip exactly."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pol.hashing import canonical_json
from pol.workers.messages import WorkersFormatError, decode_frame, encode_frame
from pol.workers.plan import FederatedPlan
from pol.workers.roundproof import decode_round_proof


def test_frame_round_trip() -> None:
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(7, dtype=np.int64)}
    header, back = decode_frame(encode_frame({"type": "x", "n": 1}, tensors))
    assert header == {"type": "x", "n": 1}
    assert back["a"].tobytes() == tensors["a"].tobytes() and back["a"].shape == (2, 3)
    assert int(back["b"]) == 7


@pytest.mark.parametrize("raw, reason", [
    (b"", "shorter than its length prefix"),
    (struct.pack("<I", 10) + b"{}", "does not fit"),
    (struct.pack("<I", 3) + b"{x}", "not JSON"),
    (struct.pack("<I", 2) + b"[]", "not a JSON object"),
    (struct.pack("<I", 2) + b"{}" + b"junk", "not a valid safetensors blob"),
])
def test_malformed_frames_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(WorkersFormatError, match=reason):
        decode_frame(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_a_format_error(raw: bytes) -> None:
    try:
        decode_round_proof(raw)
    except WorkersFormatError:
        pass


def test_honest_round_proof_round_trips(make_ctx) -> None:
    ctx = make_ctx(1)
    result = ctx.honest()
    proof = decode_round_proof(ctx.prove_result(result))
    assert proof.worker == 1 and proof.round == 0
    assert proof.indices.tolist() == result.indices.tolist()
    assert proof.digest_field("end_state_digest") == result.end_state_digest
    assert all(proof.tensors[k].tobytes() == v.tobytes() for k, v in result.end_weights.items())


@pytest.mark.parametrize("edit, reason", [
    (lambda h: h.update(format="pol-round-v0"), "not a pol-round-v1"),
    (lambda h: h.pop("signature"), "no field 'signature'"),
    (lambda h: h.update(signature="zz" * 64), "not hex"),
    (lambda h: h["body"].update(round=True), "must be int"),
    (lambda h: h["body"].update(worker=-1), "negative"),
    (lambda h: h["body"].update(end_state_digest="00"), "must be 32 bytes"),
    (lambda h: h["body"].update(indices=[[1, "2"]]), "lists of integers"),
])
def test_malformed_round_proofs_name_their_defect(make_ctx, edit, reason: str) -> None:
    raw = make_ctx(2).prove_result(make_ctx(2).honest())
    (n,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4:4 + n])
    edit(header)
    head = canonical_json(header)
    with pytest.raises(WorkersFormatError, match=reason):
        decode_round_proof(struct.pack("<I", len(head)) + head + raw[4 + n:])


def test_plan_round_trips_and_only_its_canonical_bytes_parse(plan4) -> None:
    raw = plan4.to_bytes()
    assert FederatedPlan.from_bytes(raw) == plan4
    with pytest.raises(WorkersFormatError, match="canonical"):
        FederatedPlan.from_bytes(json.dumps(json.loads(raw), indent=1).encode())


@pytest.mark.parametrize("path, value, reason", [
    (("aggregation", "rule"), "mean-of-anything", "aggregation rule"),
    (("verification", "replay_fraction"), 1.5, "replay_fraction"),
    (("verification", "exclusion"), "forgive", "exclusion"),
    (("optimizer", "type"), "LBFGS", "optimizer"),
    (("rounds",), 0, "positive"),
    (("workers",), [], "ascending, distinct ids"),
    (("lr_schedule",), {"kind": "warp"}, "lr_schedule"),
])
def test_bad_plans_are_refused(plan4, path: tuple[str, ...], value, reason: str) -> None:
    obj = json.loads(plan4.to_bytes())
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(WorkersFormatError, match=reason):
        FederatedPlan.from_bytes(canonical_json(obj))


def test_a_plan_shard_out_of_range_is_refused(plan4) -> None:
    obj = json.loads(plan4.to_bytes())
    obj["workers"][0]["shard"][-1] = 10 ** 6
    with pytest.raises(WorkersFormatError, match="in range"):
        FederatedPlan.from_bytes(canonical_json(obj))
