"""``verify_pipeline`` and ``verify_node``: judge a split-learning run, node by node."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pol.envinfo import environment_fingerprint, exact_mismatches
from pol.errors import DataUnavailableError, InputError, ProofFormatError
from pol.hashing import derive_seed
from pol.split.data import NodeData, training_columns
from pol.split.messages import Header
from pol.split.planning import trusted_public_keys
from pol.split.proof import NodeProofReader
from verifier.report import Check, Report
from verifier.sampling import choose_segments, default_segment_count, detection_probability
from verifier.split import integrity
from verifier.split.replay import NodeReplayer, data_check, initialization_check
from verifier.split.report import PipelineReport, node_report

MessageKey = tuple[int, int, int, int]


@dataclass(frozen=True)
class SplitVerifyOptions:
    segments: int | None = None            # per node; None: ~4% of its segments, at least 4
    seed: int | None = None                # verifier's randomness; None: OS entropy
    device: str = "auto"                   # auto: the node's recorded device type
    data: str | None = None                # module:callable for data that is not built in
    stage_modules: dict[int, str] = field(default_factory=dict)  # stage -> module:callable (custom stages)


def _trusted(keys: str | os.PathLike[str] | Mapping[bytes, str] | None) -> dict[bytes, str]:
    if keys is None:
        return {}
    if isinstance(keys, Mapping):
        return dict(keys)
    if not Path(keys).is_dir():
        raise InputError(f"--keys must be a directory of public key files (*.pub), not {keys}")
    return trusted_public_keys(keys)


def role(plan: Any, rank: int) -> str:
    parts = []
    if rank == plan.data_owner:
        parts.append("data owner")
    if rank == plan.label_owner:
        parts.append("label owner")
    return " + ".join(parts) or "middle"


def held_data(reader: NodeProofReader, options: SplitVerifyOptions) -> NodeData:
    """The data a node's replay needs: only what the node itself holds: features for the data owner, labels for the label owner."""
    from pol.tasks import resolve_spec

    plan, rank = reader.plan, reader.rank
    if rank not in (plan.data_owner, plan.label_owner):
        return NodeData()
    spec = resolve_spec(plan.data.get("spec"), options.data, "data")
    x, y = training_columns(spec, plan.data.get("kwargs") or {})
    return NodeData(x if rank == plan.data_owner else None, y if rank == plan.label_owner else None)


def _device(recorded: dict[str, Any], requested: str) -> str:
    import torch

    from pol.envinfo import pick_device

    if requested != "auto":
        return pick_device(requested)
    if recorded.get("device_type") == "cuda":
        if not torch.cuda.is_available():
            raise InputError("this node trained on CUDA; bitwise replay needs a CUDA device here")
        return "cuda"
    return "cpu"


def recorded_stack(reader: NodeProofReader, requested_device: str = "auto") -> str:
    """Set up the node's recorded stack for bitwise replay (device, thread count); returns the
    device. Raises InputError naming what differs when this machine cannot reproduce it."""
    import torch

    recorded = reader.plan.nodes[reader.rank]["environment"]
    device = _device(recorded, requested_device)
    threads = recorded.get("threads")
    if device == "cpu" and isinstance(threads, int) and 1 <= threads <= 4 * (os.cpu_count() or 1):
        torch.set_num_threads(threads)  # the recorded count makes bitwise replay possible
    mismatches = exact_mismatches(recorded, environment_fingerprint(device, recorded.get("dtype", "float32")))
    if mismatches:
        raise InputError(f"node {reader.rank} recorded another environment ({', '.join(mismatches)} differ); split "
                         "proofs replay only bitwise, on the recorded stack")
    return device


def verify_node(proof: str | os.PathLike[str] | NodeProofReader, *,
                keys: str | os.PathLike[str] | Mapping[bytes, str] | None,
                received_by_neighbours: Mapping[MessageKey, bytes] | None = None,
                options: SplitVerifyOptions | None = None,
                progress: Callable[[str, int], Any] | None = None,
                response: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None) -> Report:
    """Judge one node from its own proof and, for ``sent_consistency``, the headers its
    neighbours recorded of its messages (message key -> header bytes; see :func:`neighbour_headers`).
    Never needs another stage's weights; needs data only when the node owns features or labels.
    ``response``: (the node's response file, the challenge file the verifier issued) for a
    compact proof (:mod:`verifier.split.challenge`); the challenge's segments are replayed.
    Raises :class:`~pol.errors.InputError` when the node cannot be judged (exit 2)."""
    opts = options or SplitVerifyOptions()
    reader = proof if isinstance(proof, NodeProofReader) else NodeProofReader(proof)
    try:
        plan, rank = reader.plan, reader.rank
        report = node_report(str(reader.path), rank)
        report.info.update({"role": role(plan, rank), "stages": plan.node_stages(rank)})
        device = recorded_stack(reader, opts.device)
        report.add(*_as_tuple(integrity.signer_check(reader, _trusted(keys))))
        report.add(*_as_tuple(integrity.plan_signatures_check(reader)))
        chain, final_weights = integrity.chain_check(reader)
        report.checks.append(chain)
        report.checks.append(integrity.final_signature_check(reader, final_weights))
        report.extend(integrity.transcript_checks(reader))
        if received_by_neighbours is not None:
            report.checks.append(integrity.sent_consistency_check(reader, received_by_neighbours))
        else:
            report.add("sent_consistency", None, "not run", "the neighbours' recorded headers were not given")
        data = held_data(reader, opts)
        if rank in (plan.data_owner, plan.label_owner):
            report.checks.append(data_check(reader, data))
        replayer = NodeReplayer(reader, data, device, dict(opts.stage_modules))
        report.checks.append(initialization_check(replayer))
        issued = None
        if response is not None:
            from verifier.split.challenge import read_challenge, response_states

            issued = response_states(response[0], read_challenge(response[1]), reader)
        _replay(reader, replayer, report, opts, progress, issued)
        return report
    finally:
        if not isinstance(proof, NodeProofReader):
            reader.close()


def _as_tuple(check: Check) -> tuple[str, bool | None, str, str]:
    return check.name, check.passed, check.figure, check.detail


def _replay(reader: NodeProofReader, replayer: NodeReplayer, report: Report, opts: SplitVerifyOptions,
            progress: Callable[[str, int], Any] | None,
            issued: tuple[list[int], dict[int, dict[str, Any]]] | None = None) -> None:
    n = reader.plan.num_checkpoints - 1
    starts: dict[int, dict[str, Any]] = {}
    if issued is not None:
        (chosen, starts), used, how = issued, None, "interactive challenge (verifier's randomness)"
    else:
        count = opts.segments if opts.segments is not None else default_segment_count(n)
        seed = None if opts.seed is None else derive_seed(opts.seed, "split-verify", reader.rank)
        (chosen, used), how = choose_segments(n, count, seed), "uniform, verifier's randomness"
    report.info.update({
        "segments_total": n, "segments_replayed": len(chosen), "replayed_segments": chosen, "verifier_seed": used,
        "segment_selection": how,
        "detection_probability": {"one forged segment": round(detection_probability(n, len(chosen), 1 / max(n, 1)), 4),
                                  "f=0.1": round(detection_probability(n, len(chosen), 0.1), 4),
                                  "f=0.5": round(detection_probability(n, len(chosen), 0.5), 4)},
    })
    advance = progress(f"node {reader.rank} replay", len(chosen)) if progress else None
    outcomes = []
    for segment in chosen:
        outcomes.append(replayer.replay(segment, starts.get(segment)))
        if advance:
            advance(1)
    failures = [f"segment {o.segment} (steps {reader.plan.checkpoint_step(o.segment)}-"
                f"{reader.plan.checkpoint_step(o.segment + 1)}): {o.detail}" for o in outcomes if not o.passed]
    report.info.update({
        "replayed_steps": sum(o.steps for o in outcomes),
        "regenerated_steps": sum(o.regenerated_steps for o in outcomes),
        "messages_compared": sum(o.messages_compared for o in outcomes),
        "replay_seconds": round(sum(o.seconds for o in outcomes), 3),
    })
    if not chosen:
        report.add("replay", False, "no segments", "the proof has no segment to replay")
        return
    report.add("replay", not failures,
               f"{len(chosen) - len(failures)}/{len(chosen)} segments reproduce bitwise "
               f"(next checkpoint and {report.info['messages_compared']} sent digests)", "; ".join(failures[:3]))


# -- the pipeline -----------------------------------------------------------------------------

def open_run(run_dir: str | os.PathLike[str]) -> dict[int, NodeProofReader]:
    """Every ``node*.pol.h5`` in ``run_dir`` by rank; exactly one per node of the plan."""
    paths = sorted(Path(run_dir).glob("node*.pol.h5"))
    if not Path(run_dir).is_dir():
        raise InputError(f"run directory not found: {run_dir}")
    if not paths:
        raise ProofFormatError(f"{run_dir} holds no node proofs (node<rank>.pol.h5)")
    readers: dict[int, NodeProofReader] = {}
    try:
        for path in paths:
            reader = NodeProofReader(path)
            if reader.rank in readers:
                reader.close()
                raise ProofFormatError(f"two proofs claim node {reader.rank} ({readers[reader.rank].path.name}, {path.name})")
            readers[reader.rank] = reader
        expected = max(r.plan.num_nodes for r in readers.values())
        missing = sorted(set(range(expected)) - set(readers))
        if missing:
            raise DataUnavailableError(f"no proof for node(s) {missing} in {run_dir}: the pipeline cannot be judged")
    except BaseException:
        for r in readers.values():
            r.close()
        raise
    return readers


def neighbour_headers(readers: Mapping[int, NodeProofReader]) -> dict[int, dict[MessageKey, bytes]]:
    """For every node, the headers its receivers recorded of its messages (only headers)."""
    out: dict[int, dict[MessageKey, bytes]] = {r: {} for r in readers}
    for reader in readers.values():
        for i in reader.transcript_segments:
            try:
                received = reader.transcript_headers(i).received()
            except ValueError:
                continue  # malformed: the receiver's own transcript check blames it
            for h in received:
                if h.sender_node in out:
                    out[h.sender_node].setdefault(h.key, h.to_bytes())
    return out


def verify_pipeline(run_dir: str | os.PathLike[str], *, keys: str | os.PathLike[str] | Mapping[bytes, str] | None,
                    options: SplitVerifyOptions | None = None, nodes: list[int] | None = None,
                    progress: Callable[[str, int], Any] | None = None,
                    responses: Mapping[int, tuple[str | os.PathLike[str], str | os.PathLike[str]]] | None = None,
                    ) -> PipelineReport:
    """Judge every node of the run in ``run_dir`` (or only ``nodes``) and the messages between them.
    ``responses``: rank -> (response file, the challenge file issued to that node)."""
    opts = options or SplitVerifyOptions()
    trusted = _trusted(keys)
    readers = open_run(run_dir)
    try:
        report = PipelineReport(subject=str(run_dir))
        digests = Counter(r.plan_digest for r in readers.values())
        majority, _ = max(digests.items(), key=lambda kv: (kv[1], kv[0] == readers[0].plan_digest))
        odd = sorted(r for r, rd in readers.items() if rd.plan_digest != majority)
        for r in odd:
            report.blamed_by_pipeline.setdefault(r, []).append("same_plan")
        report.checks.append(Check("same_plan", not odd, f"{len(readers) - len(odd)}/{len(readers)} nodes hold plan "
                                   f"{majority.hex()[:16]}", f"node(s) {odd} hold another plan" if odd else ""))
        plan = readers[0].plan if readers[0].plan_digest == majority else next(
            rd.plan for rd in readers.values() if rd.plan_digest == majority)
        report.info.update({"plan_digest": majority.hex(), "nodes_total": plan.num_nodes,
                            "stages": plan.num_stages, "labels_at": plan.labels_at,
                            "micro_batches": plan.micro_batches, "num_steps": plan.num_steps})
        unknown = sorted(set(nodes or []) - set(readers))
        if unknown:
            raise InputError(f"the run has no node(s) {unknown}; its nodes are {sorted(readers)}")
        headers = neighbour_headers(readers)
        for rank in sorted(readers):
            if nodes is not None and rank not in nodes:
                continue
            report.nodes.append(verify_node(readers[rank], keys=trusted, received_by_neighbours=headers[rank],
                                            options=opts, progress=progress, response=(responses or {}).get(rank)))
        replayed = sum(int(r.info.get("replayed_steps", 0)) for r in report.nodes)
        trained = plan.num_steps * max(1, len(report.nodes))
        report.info["verify_fraction"] = round(replayed / trained, 4)
        report.info["replayed_node_steps"] = replayed
        report.info["trained_node_steps"] = trained
        return report
    finally:
        for r in readers.values():
            r.close()


__all__ = ["SplitVerifyOptions", "verify_node", "verify_pipeline", "neighbour_headers", "open_run", "Header"]
