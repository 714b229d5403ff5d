"""Integrity checks of one node's proof: keys, signatures, chain, transcript.

Every check here blames the node whose proof is judged: a proof is its signer's statement.
"""

from __future__ import annotations

from collections.abc import Mapping

from pol.errors import ProofFormatError
from pol.hashing import state_digest, weights_digest
from pol.keys import fingerprint
from pol.split.engine import expected_messages
from pol.split.messages import Header, signature_valid, tensor_digest
from pol.split.node_state import node_weights
from pol.split.planning import plan_signature_valid
from pol.split.proof import FINAL_SIGNATURE_DOMAIN, NodeProofReader, final_message, genesis, link
from verifier.report import Check

_SHOW = 3


def _more(items: list[str]) -> str:
    return "; ".join(items[:_SHOW]) + (f"; and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def signer_check(reader: NodeProofReader, trusted: Mapping[bytes, str]) -> Check:
    """The proof is signed by the key the plan gives this node, and the verifier trusts that key."""
    plan_key = reader.plan.public_key(reader.rank)
    if reader.signer_public_key != plan_key:
        return Check("signer", False, "key not in the plan",
                     f"the proof names key {fingerprint(reader.signer_public_key)[:16]}, the plan gives node "
                     f"{reader.rank} key {fingerprint(plan_key)[:16]}")
    if plan_key not in trusted:
        return Check("signer", None, f"self-asserted ({fingerprint(plan_key)[:16]})",
                     "the node's plan key is not among the trusted public keys (--keys)")
    return Check("signer", True, f"trusted key {trusted[plan_key]} ({fingerprint(plan_key)[:16]})")


def plan_signatures_check(reader: NodeProofReader) -> Check:
    plan = reader.plan
    bad = [r for r in range(plan.num_nodes)
           if not plan_signature_valid(reader.plan_bytes, plan.public_key(r), reader.plan_signatures[r])]
    if bad:
        return Check("plan_signatures", False, f"{plan.num_nodes - len(bad)}/{plan.num_nodes} valid",
                     f"the proof holds plan signatures of node(s) {bad} that do not verify under their plan keys")
    return Check("plan_signatures", True, f"signed by all {plan.num_nodes} nodes")


def chain_check(reader: NodeProofReader) -> tuple[Check, bytes | None]:
    """Rehash every stored checkpoint and every transcript segment, relink; returns the check and
    the digest of the final weights (None when the last checkpoint cannot be read)."""
    plan = reader.plan
    n = plan.num_checkpoints
    problems: list[str] = []
    if reader.num_checkpoints != n:
        return Check("chain", False, f"{reader.num_checkpoints}/{n} checkpoints",
                     f"the plan implies {n} checkpoints, the chain holds {reader.num_checkpoints}"), None
    if reader.checkpoint_steps != [plan.checkpoint_step(i) for i in range(n)]:
        problems.append("checkpoint steps differ from the plan's")
    expected_stored = [i for i in range(n) if plan.stored_checkpoint(i)]
    if reader.stored_checkpoints != expected_stored:
        problems.append(f"stored checkpoints {reader.stored_checkpoints[:6]} differ from the plan's {expected_stored[:6]}")
    if reader.transcript_segments != list(range(1, n)):
        problems.append("transcript segments are missing or extra")
    final_weights = None
    for i in reader.stored_checkpoints:
        try:
            state = reader.checkpoint_state(i)
        except ProofFormatError as exc:
            problems.append(str(exc))
            continue
        if state_digest(state) != reader.state_digests[i]:
            problems.append(f"checkpoint {i} does not hash to its chain state digest")
        if int(state.get("meta/step", -1)) != plan.checkpoint_step(i):
            problems.append(f"checkpoint {i} holds step {int(state.get('meta/step', -1))}")
        if i == n - 1:
            final_weights = weights_digest(node_weights(state))
    if reader.transcript_digests[0] != bytes(32):
        problems.append("checkpoint 0 names a transcript")
    head = genesis(reader.plan_digest, reader.rank, reader.state_digests[0])
    links_ok = head == reader.chain_digests[0]
    for i in range(1, n):
        if i in reader.transcript_segments:
            if reader.recomputed_transcript_digest(i) != reader.transcript_digests[i]:
                problems.append(f"transcript segment {i} does not hash to its chain transcript digest")
        head = link(head, reader.state_digests[i], reader.transcript_digests[i])
        links_ok = links_ok and head == reader.chain_digests[i]
    if not links_ok:
        problems.append("chain links do not recompute")
    final = reader.final
    if final is None:
        problems.append("the run never finished (no /final)")
    elif final["chain_head"] != reader.chain_digests[-1] or final["num_checkpoints"] != n \
            or final["num_steps"] != plan.num_steps:
        problems.append("/final does not match the chain")
    if problems:
        return Check("chain", False, f"{n} checkpoints", _more(problems)), final_weights
    return Check("chain", True, f"{n} checkpoints, {n - 1} transcript segments rehashed and relinked"), final_weights


def final_signature_check(reader: NodeProofReader, final_weights: bytes | None) -> Check:
    if reader.final_signature is None or reader.final is None:
        return Check("final_signature", False, "missing", "the node never signed the end of its run")
    if final_weights is None:
        return Check("final_signature", False, "unreadable final weights", "the last checkpoint cannot be read")
    message = final_message(reader.plan_digest, reader.rank, reader.chain_digests[-1], final_weights,
                            reader.num_checkpoints, reader.plan.num_steps)
    from pol.errors import BadSignatureError
    from pol.keys import verify_signature

    try:
        verify_signature(reader.plan.public_key(reader.rank), FINAL_SIGNATURE_DOMAIN, message, reader.final_signature)
    except BadSignatureError:
        return Check("final_signature", False, "invalid",
                     "the final signature does not verify under the node's plan key over the recomputed chain head "
                     "and final weights")
    return Check("final_signature", True, "valid over the chain head and final weights")


def transcript_checks(reader: NodeProofReader, with_tensors: bool = True) -> list[Check]:
    """``transcript``: the messages the committed schedule implies, in order, well formed, the
    sent ones signed by this node; ``received_signatures``: every received header carries its
    sender's signature under the sender's plan key; ``received_tensors``: every recorded tensor
    hashes to the digest its sender signed."""
    plan, rank = reader.plan, reader.rank
    own_key = plan.public_key(rank)
    keys = [plan.public_key(r) for r in range(plan.num_nodes)]
    structure: list[str] = []
    bad_sigs: list[str] = []
    bad_tensors: list[str] = []
    received_count = 0
    for i in reader.transcript_segments:
        if i >= plan.num_checkpoints:
            continue
        seg = reader.transcript(i) if with_tensors else reader.transcript_headers(i)
        want_recv: list[tuple[int, int, int, int]] = []
        want_sent: list[tuple[int, int, int, int]] = []
        for t in plan.segment_steps(i - 1):
            r, s = expected_messages(plan, rank, t)
            want_recv += r
            want_sent += s
        try:
            recv, sent = seg.received(), seg.sent()
        except ValueError as exc:
            structure.append(f"segment {i}: {exc}")
            continue
        if [h.key for h in recv] != want_recv:
            structure.append(f"segment {i}: the received messages are not the {len(want_recv)} the schedule implies")
        if [h.key for h in sent] != want_sent:
            structure.append(f"segment {i}: the sent messages are not the {len(want_sent)} the schedule implies")
        for h in sent:
            if h.plan_digest != reader.plan_digest or h.sender_node != rank \
                    or h.receiver_node != plan.stage_node(h.receiver_stage) or not signature_valid(h, own_key):
                structure.append(f"segment {i}: sent {h.describe()} is not a header this node signed for this plan")
        for j, h in enumerate(recv):
            received_count += 1
            sender = plan.stage_node(h.sender_stage) if 0 <= h.sender_stage < plan.num_stages else None
            if h.plan_digest != reader.plan_digest or sender is None or h.sender_node != sender \
                    or h.receiver_node != rank or not signature_valid(h, keys[sender]):
                bad_sigs.append(f"segment {i}: {h.describe()}")
            if with_tensors and tensor_digest(seg.received_tensors[j]) != h.digest:
                bad_tensors.append(f"segment {i}: {h.describe()}")
    checks = [
        Check("transcript", not structure, f"{len(reader.transcript_segments)} segments",
              _more(structure) if structure else ""),
        Check("received_signatures", not bad_sigs, f"{received_count - len(bad_sigs)}/{received_count} headers signed "
              "by their senders", ("recorded headers their senders never signed: " + _more(bad_sigs)) if bad_sigs else ""),
    ]
    if with_tensors:
        checks.append(Check("received_tensors", not bad_tensors,
                            f"{received_count - len(bad_tensors)}/{received_count} tensors match their signed digests",
                            ("recorded tensors differ from what their senders signed: " + _more(bad_tensors))
                            if bad_tensors else ""))
    return checks


def sent_consistency_check(reader: NodeProofReader, received_by_neighbours: Mapping[tuple[int, int, int, int], bytes]) -> Check:
    """Every message this node sent, as its receiver recorded it under this node's valid
    signature, equals this node's own record: a difference means this node signed two different
    statements about one message. ``received_by_neighbours``: message key -> header bytes, from
    the receivers' transcripts (their signed headers, nothing else)."""
    own_key = reader.plan.public_key(reader.rank)
    compared, problems, missing = 0, [], 0
    for i in reader.transcript_segments:
        for h in reader.transcript_headers(i).sent():
            theirs = received_by_neighbours.get(h.key)
            if theirs is None:
                missing += 1
                continue
            other = Header.from_bytes(theirs)
            if not signature_valid(other, own_key):
                continue  # not this node's statement: the receiver's own checks blame the receiver
            compared += 1
            if other.to_bytes() != h.to_bytes():
                what = "digest" if other.digest != h.digest else "header"
                problems.append(f"{h.describe()}: the receiver holds this node's signature on another {what}")
    detail = _more(problems) if problems else ""
    figure = f"{compared} messages match their receivers' copies" + (f" ({missing} not recorded by the receiver)"
                                                                      if missing else "")
    return Check("sent_consistency", not problems, figure, detail)
