"""The pipeline plan (agreement, validation of untrusted bytes) and signed message headers."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from pol.errors import PlanError, ProofFormatError
from pol.split.messages import BACKWARD, FORWARD, HEADER_SIZE, Header, sign_header, signature_valid, tensor_digest
from pol.split.plan import PipelinePlan, node_of_stage
from pol.split.planning import SplitConfig, build_plan


def contributions(n: int, samples: int = 1500) -> list[dict]:
    out = []
    for r in range(n):
        c = {"rank": r, "public_key": (bytes([r + 1]) * 32).hex(),
             "environment": {"threads": 1}}
        out.append(c)
    out[0]["features"] = {"merkle_root": "aa" * 32, "num_samples": samples}
    out[-1]["labels"] = {"merkle_root": "bb" * 32, "num_samples": samples}
    return out


def make_plan(**config: object) -> PipelinePlan:
    cfg = SplitConfig(**{"stages": 3, "steps": 20, **config})  # type: ignore[arg-type]
    contrib = contributions(cfg.num_nodes)
    if cfg.labels_at == "first":
        contrib[0]["labels"] = contrib[-1].pop("labels")
    return build_plan(cfg, contrib, "00" * 16, "2024-01-01T00:00:00+00:00")


def test_stage_assignment_plain_and_u_shaped() -> None:
    assert node_of_stage(3, "last") == [0, 1, 2]
    assert node_of_stage(3, "first") == [0, 1, 0]          # the data owner holds the head
    assert node_of_stage(4, "first") == [0, 1, 2, 0]
    with pytest.raises(PlanError):
        node_of_stage(2, "first")                          # one node would hold the whole model
    u = make_plan(labels_at="first")
    assert u.num_nodes == 2 and u.node_stages(0) == [0, 2] and u.label_owner == 0 == u.data_owner


def test_plan_round_trips_and_its_digest_is_the_pipeline_id() -> None:
    plan = make_plan()
    again = PipelinePlan.from_bytes(plan.to_bytes())
    assert again == plan and again.digest() == plan.digest()
    assert make_plan(seed=1).digest() != plan.digest()     # every field is bound


def test_plan_build_is_a_function_of_config_and_contributions() -> None:
    assert make_plan().to_bytes() == make_plan().to_bytes()
    assert make_plan(micro_batches=4).to_bytes() != make_plan().to_bytes()


@pytest.mark.parametrize("change", [
    lambda o: o.update(micro_batches=3),                                  # 32 is not a multiple of 3
    lambda o: o["stages"][1].update(node=2),                              # stage on the wrong node
    lambda o: o["nodes"][1].update(public_key=o["nodes"][0]["public_key"]),  # two nodes, one key
    lambda o: o["data"]["labels"].update(owner=0),                        # labels not at the last stage's node
    lambda o: o["stages"][0]["optimizer"].update(type="LBFGS"),           # not allow-listed
    lambda o: o.update(step_rng="something else"),                        # a seeding rule this build lacks
    lambda o: o.update(format="pol-split-plan-x"),
    lambda o: o["nodes"].pop(),
])
def test_inconsistent_plans_are_refused(change) -> None:  # type: ignore[no-untyped-def]
    obj = json.loads(make_plan().to_bytes())
    change(obj)
    raw = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(ProofFormatError):
        PipelinePlan.from_bytes(raw)


def test_non_canonical_plan_bytes_are_refused() -> None:
    raw = make_plan().to_bytes()
    with pytest.raises(ProofFormatError, match="canonical"):
        PipelinePlan.from_bytes(json.dumps(json.loads(raw), indent=1, sort_keys=True).encode())
    with pytest.raises(ProofFormatError):
        PipelinePlan.from_bytes(b"\xff not json")


def test_sample_counts_of_the_two_owners_must_agree() -> None:
    contrib = contributions(3)
    contrib[2]["labels"]["num_samples"] = 1499
    with pytest.raises(PlanError, match="same samples"):
        build_plan(SplitConfig(stages=3, steps=5), contrib, "00" * 16, "now")


# -- headers ---------------------------------------------------------------------------------

def header(**changes: object) -> Header:
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    fields = dict(plan_digest=b"p" * 32, step=7, micro_batch=1, direction=FORWARD, sender_stage=0, sender_node=0,
                  receiver_node=1, digest=tensor_digest(arr), dtype="float32", shape=(3, 4))
    return Header(**{**fields, **changes})  # type: ignore[arg-type]


def test_header_round_trip_and_signature() -> None:
    from nacl.signing import SigningKey

    key, other = SigningKey.generate(), SigningKey.generate()
    h = sign_header(header(), key)
    raw = h.to_bytes()
    assert len(raw) == HEADER_SIZE and Header.from_bytes(raw) == h
    assert signature_valid(h, bytes(key.verify_key))
    assert not signature_valid(h, bytes(other.verify_key))              # another key
    for field, value in [("step", 8), ("micro_batch", 0), ("direction", BACKWARD), ("sender_stage", 1),
                         ("digest", b"x" * 32), ("plan_digest", b"q" * 32), ("shape", (4, 3))]:
        forged = dataclasses.replace(h, **{field: value})
        assert not signature_valid(forged, bytes(key.verify_key)), field  # every field is signed


def test_tensor_digest_binds_values_dtype_and_shape() -> None:
    a = np.arange(6, dtype=np.float32)
    assert tensor_digest(a) == tensor_digest(a.copy())
    assert tensor_digest(a) != tensor_digest(a.reshape(2, 3))
    assert tensor_digest(a) != tensor_digest(a.astype(np.float64))
    b = a.copy()
    b[3] = np.nextafter(b[3], np.float32(10))
    assert tensor_digest(a) != tensor_digest(b)


@pytest.mark.parametrize("raw", [b"", b"x" * HEADER_SIZE, header().to_bytes()[:-1],
                                 b"PSM1" + b"\xff" * (HEADER_SIZE - 4)])
def test_malformed_headers_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        Header.from_bytes(raw)
