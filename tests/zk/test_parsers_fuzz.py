"""Untrusted bytes: every parser either returns a value or raises a ZkFormatError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zk import BindingProof, Committer, Context, OpeningProof, ZkFormatError, get_backend, prove_binding, prove_opening
from zk.link import OwnershipProof, parse_openings

RUN = b"\x07" * 32


@pytest.fixture(scope="module")
def valid_proofs(ref_committer: Committer) -> dict[str, bytes]:
    """One honest proof of each binary kind (the reference backend, 64-value chunks)."""
    c = ref_committer
    old_vals = np.arange(-40, 60)  # two chunks, the second partial
    old, old_bl = c.commit_values(old_vals)
    opening = prove_opening(c, Context(RUN, 1), old, old_vals, old_bl, challenge=b"fuzz")
    binding = prove_binding(c, Context(RUN, 1, b"\x05" * 32), old, old_bl)
    own = OwnershipProof(RUN, 1, b"fuzz", c.params.genset_id, opening)
    return {"opening": opening.to_bytes(), "binding": binding.to_bytes(), "ownership": own.to_bytes()}


PARSERS = {"opening": OpeningProof.from_bytes, "binding": BindingProof.from_bytes,
           "ownership": OwnershipProof.from_bytes}


def test_valid_proofs_parse_and_round_trip(valid_proofs: dict[str, bytes]) -> None:
    for kind, raw in valid_proofs.items():
        assert PARSERS[kind](raw).to_bytes() == raw


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(sorted(PARSERS)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    tail=st.binary(max_size=40),
)
def test_mutated_proofs_parse_cleanly_or_raise_format_errors(
    valid_proofs: dict[str, bytes], kind: str, edits: list[tuple[int, int]], cut: int | None, tail: bytes
) -> None:
    data = bytearray(valid_proofs[kind])
    for offset, value in edits:  # byte edits anywhere, the header (magic, version, lengths) included
        data[offset % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    data += tail
    try:
        parsed = PARSERS[kind](bytes(data))
    except ZkFormatError as exc:
        assert str(exc)  # anything else (IndexError, struct.error, ...) fails the test
        return
    assert parsed.to_bytes() == bytes(data)  # whatever parses is exactly what was read


# Per kind, a damage the parser must see: bad magic, or (a bare binding proof has no header) z >= r.
DAMAGE = {
    "opening": lambda raw: b"X" + raw[1:],
    "ownership": lambda raw: b"X" + raw[1:],
    "binding": lambda raw: raw[:48] + b"\xff" * 32,
}


@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_damaged_proofs_are_format_errors(valid_proofs: dict[str, bytes], kind: str) -> None:
    raw = valid_proofs[kind]
    for bad in (raw[:-1], raw + b"\x00", b"", DAMAGE[kind](raw)):
        assert bad != raw
        with pytest.raises(ZkFormatError):
            PARSERS[kind](bad)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=48, max_size=48))
def test_point_decoding_only_raises_format_errors(data: bytes) -> None:
    be = get_backend("pyecc")
    try:
        pt = be.decode(data)
    except ZkFormatError:
        return
    assert be.encode(pt) == data  # anything accepted is canonical


def _opening_doc(**chunk: object) -> dict:
    entry = {"index": 0, "values": [1], "blinding": "01", "commitment": "", "path": []}
    entry.update(chunk)
    return {"kind": "pol-zk-opening", "schema_version": 1, "run_id": "00", "checkpoint": 0, "chunks": [entry]}


def test_well_formed_opening_document_parses() -> None:
    run_id, ckpt, openings = parse_openings(_opening_doc(index=3))
    assert run_id == b"\x00" and ckpt == 0 and openings[0].index == 3 and openings[0].values == (1,)


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        {"kind": "pol-zk-opening"},
        {"kind": "pol-zk-opening", "schema_version": 1, "run_id": "zz", "checkpoint": 0, "chunks": []},
        {"kind": "pol-zk-opening", "schema_version": 1, "run_id": "00", "checkpoint": True, "chunks": []},
        _opening_doc(values=[1.5]),
        _opening_doc(blinding="f" * 80),
        _opening_doc(index="3"),  # a string that int() would accept
        _opening_doc(index=3.9),  # a float that int() would truncate
        _opening_doc(index=True),  # a bool, which is an int to Python
        _opening_doc(index=None),
    ],
)
def test_malformed_opening_documents(doc: object) -> None:
    with pytest.raises(ZkFormatError):
        parse_openings(doc)
