"""The two parties of a dispute as ``torch.distributed`` processes: rank 0 the prover, rank 1 the verifier.

``pol dispute run PROOF --segment J --prover-key K --out F`` spawns both on this host; the same
module runs under torchrun, one party per host::

    torchrun --nnodes 2 --nproc-per-node 1 --node-rank 0 --rdzv-endpoint HOST:PORT \\
        -m verifier.dispute_party PROOF --segment J --prover-key trainer.key          # the prover's host
    torchrun --nnodes 2 --nproc-per-node 1 --node-rank 1 --rdzv-endpoint HOST:PORT \\
        -m verifier.dispute_party PROOF --segment J --out fraud.h5                    # the verifier's host

Messages are byte strings sent as uint8 tensors (a length, then the bytes) over the gloo backend
(host bytes, so gloo even where CUDA replays the steps): requests and claims as canonical JSON,
states as safetensors bytes (no pickle). Everything the other party sends is parsed as
untrusted input. Each party holds its own copy of the proof; only the prover holds the key.
Exit codes (verifier): 0 a fraud proof was written, 1 the segment replays (no dispute),
2 the input could not be judged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from pol.errors import InputError, PolError
from pol.hashing import canonical_json
from pol.state import State
from verifier import untrusted_json as uj
from verifier.fraud_proof import Claim

PROVER, VERIFIER = 0, 1
MAX_MESSAGE_BYTES = 1 << 31
NO_DISPUTE_EXIT = 1


def send_bytes(data: bytes, peer: int) -> None:
    import torch
    import torch.distributed as dist

    dist.send(torch.tensor([len(data)], dtype=torch.int64), peer)
    if data:
        dist.send(torch.frombuffer(bytearray(data), dtype=torch.uint8), peer)


def recv_bytes(peer: int) -> bytes:
    import torch
    import torch.distributed as dist

    size = torch.zeros(1, dtype=torch.int64)
    dist.recv(size, peer)
    n = int(size.item())
    if not 0 <= n <= MAX_MESSAGE_BYTES:
        raise InputError(f"the other party announced a message of {n} bytes")
    if n == 0:
        return b""
    buf = torch.empty(n, dtype=torch.uint8)
    dist.recv(buf, peer)
    return bytes(buf.numpy().tobytes())


def encode_state(state: State) -> bytes:
    from safetensors.numpy import save

    return save({k: v for k, v in state.items()})


def decode_state(raw: bytes) -> State:
    from safetensors.numpy import load

    try:
        return dict(load(raw))
    except Exception as exc:  # safetensors raises its own error types on malformed bytes
        raise InputError(f"the prover sent a malformed state: {str(exc)[:120]}") from None


class RemoteProver:
    """The verifier's :class:`~verifier.dispute.ProverLink` to the prover process."""

    def __init__(self, peer: int = PROVER):
        self.peer = peer

    def _ask(self, op: str, step: int) -> bytes:
        send_bytes(canonical_json({"op": op, "step": step}), self.peer)
        return recv_bytes(self.peer)

    def claim(self, step: int) -> Claim | None:
        raw = self._ask("claim", step)
        try:
            return Claim.from_json(uj.loads(raw, "the prover's claim")) if raw else None
        except uj.DocumentError:
            return None

    def state(self, step: int) -> State | None:
        raw = self._ask("state", step)
        return decode_state(raw) if raw else None

    def close(self) -> None:
        send_bytes(canonical_json({"op": "done", "step": 0}), self.peer)


def serve_prover(prover: Any, limit: int, peer: int = VERIFIER) -> int:
    """Answer the verifier's requests until it says done; returns the number answered."""
    answered = 0
    while True:
        request = uj.loads(recv_bytes(peer), "the verifier's request")
        op, step = request.get("op"), request.get("step")
        if op == "done":
            return answered
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= limit or op not in ("claim", "state"):
            send_bytes(b"", peer)
            continue
        answered += 1
        if op == "claim":
            send_bytes(json.dumps(prover.claim(step).to_json()).encode(), peer)
        else:
            send_bytes(encode_state(prover.state(step)), peer)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verifier.dispute_party")
    p.add_argument("proof")
    p.add_argument("--segment", type=int, required=True)
    p.add_argument("--prover-key", default=None, help="the prover's secret key (rank 0)")
    p.add_argument("--out", default=None, help="fraud proof to write (rank 1)")
    p.add_argument("--summary", default=None, help="JSON summary to write (rank 1)")
    p.add_argument("--data", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--loss", default=None)
    p.add_argument("--data-kwargs", default=None)
    return p


def run_party(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from pol.keys import load_signing_key
    from pol.proof_file import ProofReader
    from verifier.dispute import LocalProver, ReplayingOracle, dispute_segment
    from verifier.fraud_proof import write_fraud_proof
    from verifier.subject import proof_subject
    from verifier.unit_replay import ExactUnitReplayer

    dist.init_process_group("gloo")
    try:
        rank = dist.get_rank()
        if dist.get_world_size() != 2:
            raise InputError("a dispute has exactly two parties (world size 2)")
        kwargs = json.loads(args.data_kwargs) if args.data_kwargs else None
        with ProofReader(args.proof, model_spec=args.model) as reader:
            units = ExactUnitReplayer(reader, data=args.data, model=args.model, loss=args.loss, data_kwargs=kwargs)
            subject = proof_subject(reader).digest
            if rank == PROVER:
                if args.prover_key is None:
                    raise InputError("the prover (rank 0) needs --prover-key")
                key = load_signing_key(args.prover_key)
                if bytes(key.verify_key) != bytes(reader.signer_public_key):
                    raise InputError("--prover-key is not the key that signed this proof")
                serve_prover(LocalProver(ReplayingOracle(units), key, subject), reader.num_recorded_steps)
                return 0
            link = RemoteProver()
            try:
                outcome = dispute_segment(units, args.segment, subject, link)
            finally:
                link.close()
        summary = outcome.summary()
        if outcome.fraud_proof is not None and args.out:
            write_fraud_proof(args.out, outcome.fraud_proof)
            summary["fraud_proof"] = args.out
        if args.summary:
            with open(args.summary, "w") as fh:
                json.dump(summary, fh)
        return 0 if outcome.fraud_proof is not None else NO_DISPUTE_EXIT
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run_party(args)
    except PolError as exc:
        print(f"pol dispute party {os.environ.get('RANK', '?')}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. the other party vanished mid-message (gloo raises RuntimeError)
        print(f"pol dispute party {os.environ.get('RANK', '?')}: failed: {type(exc).__name__}: {str(exc)[:300]}",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
