"""The pipeline certificate: one canonical-JSON file beside the node proofs (``RUN/certificate.json``).

::

    {"schema": "pol-pipeline-certificate-v1", "simulated_tee": true,
     "pipeline": {"plan_digest": <hex>, "num_nodes": 3, "num_steps": 10},
     "nodes": [{"rank": 0, "stages": [0], "public_key": <hex>, "proof": "node0.pol.h5",
                "chain_head": <hex>, "final_weights_digest": <hex>,
                "attestation": NodeAttestation.to_json(), "weights_commitment": FinalWeightsCommitment.to_json()},
               ...],
     "tee": {"root_public_key": <hex>, "collateral": <hex of the vendor-signed collateral the checker used>},
     "quorum": {"f": 1, "verifiers": [<hex>, ...], "votes": [signed vote, ...],
                "decisions": {"0": "accepted", ...}}}

Everything but ``quorum`` is the **body**, a pure function of the run directory (node proofs,
``attestation.json``, ``node<r>.commitment.json``) and the TEE collateral: every verifier computes
it itself, and votes name :func:`certificate_digest` of it (``tagged_hash("pol-pipeline-certificate-v1",
canonical_json(body))``), so the quorum section is filled after the votes without changing what
they signed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pol.errors import InputError
from pol.hashing import canonical_json, tagged_hash
from verifier import untrusted_json as uj

SCHEMA = "pol-pipeline-certificate-v1"
CERTIFICATE_FILE = "certificate.json"
MAX_CERTIFICATE_BYTES = 64 << 20
_DIGEST_TAG = b"pol-pipeline-certificate-v1"
_NODE_FIELDS = {"rank", "stages", "public_key", "proof", "chain_head", "final_weights_digest", "attestation",
                "weights_commitment"}


def certificate_digest(cert: dict[str, Any]) -> bytes:
    """What votes name: the digest of the certificate without its quorum section."""
    return tagged_hash(_DIGEST_TAG, canonical_json({k: v for k, v in cert.items() if k != "quorum"}))


def build_body(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The certificate body from a finished ``--attest --commit`` run (InputError when a part is
    missing): a pure function of the run directory, so that every verifier computes the same digest."""
    from pol.smallfiles import JSON_FILE_BYTES
    from verifier.split.api import open_run

    from certify.node_commitment import commitment_path, load_commitment, node_binding
    from certify.pipeline_attestation import ATTESTATION_FILE

    run = Path(run_dir)
    att_path = run / ATTESTATION_FILE
    if not att_path.is_file():
        raise InputError(f"{att_path} is missing: certify a run trained with --attest")
    attestation = uj.load(att_path, JSON_FILE_BYTES, "attestation record")
    if attestation.get("admitted") is not True:
        raise InputError(f"{att_path}: the nodes were not admitted; the run did not start")
    quotes = {n.get("rank"): n for n in attestation.get("nodes", []) if isinstance(n, dict)}
    readers = open_run(run)
    try:
        plan = readers[0].plan
        nodes = []
        for rank in range(plan.num_nodes):
            reader = readers[rank]
            if reader.final is None:
                raise InputError(f"node {rank}'s proof is unfinished")
            if rank not in quotes:
                raise InputError(f"{att_path} holds no quote of node {rank}")
            if not commitment_path(run, rank).is_file():
                raise InputError(f"{commitment_path(run, rank)} is missing: certify a run trained with --commit")
            fwc = load_commitment(commitment_path(run, rank))
            if fwc.binding != node_binding(reader):
                raise InputError(f"{commitment_path(run, rank)} is bound to another chain than node {rank}'s proof")
            nodes.append({"rank": rank, "stages": plan.node_stages(rank), "public_key": reader.signer_public_key.hex(),
                          "proof": reader.path.name, "chain_head": reader.final["chain_head"].hex(),
                          "final_weights_digest": reader.final["final_weights_digest"].hex(),
                          "attestation": quotes[rank], "weights_commitment": fwc.to_json()})
        tee = {"root_public_key": attestation.get("root_public_key"), "collateral": attestation.get("collateral")}
        return {"schema": SCHEMA, "simulated_tee": True,
                "pipeline": {"plan_digest": plan.digest().hex(), "num_nodes": plan.num_nodes,
                             "num_steps": plan.num_steps},
                "nodes": nodes, "tee": tee}
    finally:
        for r in readers.values():
            r.close()


def write_certificate(path: str | os.PathLike[str], cert: dict[str, Any]) -> Path:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(canonical_json(cert))
    os.replace(tmp, p)
    return p


def read_certificate(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a (untrusted) certificate strictly: known fields, exact types (DocumentError, exit 2).
    The nested attestation, commitment and vote records are parsed by their own readers when checked."""
    what = "certificate"
    cert = uj.load(path, MAX_CERTIFICATE_BYTES, what)
    uj.no_other_fields(cert, {"schema", "simulated_tee", "pipeline", "nodes", "tee", "quorum"}, what)
    if uj.field(cert, "schema", str, what) != SCHEMA:
        raise uj.DocumentError(f"{what}: not a {SCHEMA}")
    uj.field(cert, "simulated_tee", bool, what)
    pipeline = uj.field(cert, "pipeline", dict, what)
    uj.no_other_fields(pipeline, {"plan_digest", "num_nodes", "num_steps"}, what)
    uj.hex_field(pipeline, "plan_digest", 32, what)
    num_nodes = uj.field(pipeline, "num_nodes", int, what)
    uj.field(pipeline, "num_steps", int, what)
    nodes = uj.field(cert, "nodes", list, what)
    if not 1 <= num_nodes <= 1024 or len(nodes) != num_nodes:
        raise uj.DocumentError(f"{what}: {len(nodes)} node entries for {num_nodes} nodes")
    for i, node in enumerate(nodes):
        w = f"{what} node entry {i}"
        if not isinstance(node, dict):
            raise uj.DocumentError(f"{w} must be an object")
        uj.no_other_fields(node, _NODE_FIELDS, w)
        if uj.field(node, "rank", int, w) != i:
            raise uj.DocumentError(f"{w}: ranks must be 0..{num_nodes - 1} in order")
        uj.int_list(node, "stages", w)
        for key in ("public_key", "chain_head", "final_weights_digest"):
            uj.hex_field(node, key, 32, w)
        proof = uj.field(node, "proof", str, w)
        if proof != f"node{i}.pol.h5":
            raise uj.DocumentError(f"{w}: the proof must be node{i}.pol.h5 beside the certificate")
        uj.field(node, "attestation", dict, w)
        uj.field(node, "weights_commitment", dict, w)
    tee = uj.field(cert, "tee", dict, what)
    uj.no_other_fields(tee, {"root_public_key", "collateral"}, what)
    uj.hex_field(tee, "root_public_key", 32, what)
    uj.field(tee, "collateral", str, what)
    quorum = uj.field(cert, "quorum", dict, what, optional=True)
    if quorum is not None:
        uj.no_other_fields(quorum, {"f", "verifiers", "votes", "decisions"}, what)
        uj.field(quorum, "f", int, what)
        verifiers = uj.field(quorum, "verifiers", list, what)
        if not all(isinstance(v, str) for v in verifiers):
            raise uj.DocumentError(f"{what}: verifiers must be hex keys")
        uj.field(quorum, "votes", list, what)
        uj.field(quorum, "decisions", dict, what)
    return cert
