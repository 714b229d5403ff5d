"""Untrusted bytes: every parser either returns a value or raises a ZkFormatError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zk import OpeningProof, ZkFormatError, get_backend
from zk.link import OwnershipProof, parse_openings
from zk.sigma import LinearProof


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_proof_parsers_only_raise_format_errors(data: bytes) -> None:
    for parse in (OpeningProof.from_bytes, LinearProof.from_bytes, OwnershipProof.from_bytes):
        try:
            parse(data)
        except ZkFormatError:
            pass


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=48, max_size=48))
def test_point_decoding_only_raises_format_errors(data: bytes) -> None:
    be = get_backend("pyecc")
    try:
        pt = be.decode(data)
    except ZkFormatError:
        return
    assert be.encode(pt) == data  # anything accepted is canonical


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        {"kind": "pol-zk-opening"},
        {"kind": "pol-zk-opening", "schema_version": 1, "run_id": "zz", "checkpoint": 0, "chunks": []},
        {"kind": "pol-zk-opening", "schema_version": 1, "run_id": "00", "checkpoint": True, "chunks": []},
        {"kind": "pol-zk-opening", "schema_version": 1, "run_id": "00", "checkpoint": 0,
         "chunks": [{"index": 0, "values": [1.5], "blinding": "01", "commitment": "", "path": []}]},
        {"kind": "pol-zk-opening", "schema_version": 1, "run_id": "00", "checkpoint": 0,
         "chunks": [{"index": 0, "values": [1], "blinding": "f" * 80, "commitment": "", "path": []}]},
    ],
)
def test_malformed_opening_documents(doc: object) -> None:
    with pytest.raises(ZkFormatError):
        parse_openings(doc)
