"""The boundary transcript of one node: what it received and sent, segment by segment.

Segment ``i`` (``i >= 1``) holds the messages of the steps between checkpoints ``i-1`` and ``i``:

* ``received``: the signed headers the node received, in arrival order, and the tensors that
  came with them (activations from upstream, gradients from downstream);
* ``sent``: the headers the node signed and sent, in sending order.

The chain binds a segment through ``transcript_digest = tagged_hash("pol-split-transcript-v1",
u64 count_received || received headers, u64 count_sent || sent headers)``. The received tensors
are bound by the digests inside their headers (which the node checked on receipt and a verifier
checks again).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from pol.hashing import tagged_hash
from pol.split.messages import HEADER_SIZE, Header


@dataclass
class TranscriptSegment:
    received_headers: list[bytes] = field(default_factory=list)
    received_tensors: list[np.ndarray] = field(default_factory=list)
    sent_headers: list[bytes] = field(default_factory=list)

    def digest(self) -> bytes:
        return transcript_digest(self.received_headers, self.sent_headers)

    def received(self) -> list[Header]:
        return [Header.from_bytes(h) for h in self.received_headers]

    def sent(self) -> list[Header]:
        return [Header.from_bytes(h) for h in self.sent_headers]

    def raw_tensor_bytes(self) -> int:
        return sum(int(t.nbytes) for t in self.received_tensors)


def transcript_digest(received_headers: list[bytes], sent_headers: list[bytes]) -> bytes:
    for h in (*received_headers, *sent_headers):
        if len(h) != HEADER_SIZE:
            raise ValueError("transcript headers must be whole message headers")
    return tagged_hash(b"pol-split-transcript-v1",
                       struct.pack("<Q", len(received_headers)) + b"".join(received_headers),
                       struct.pack("<Q", len(sent_headers)) + b"".join(sent_headers))


class TranscriptRecorder:
    """Collects a node's messages; :meth:`take` hands over the segment since the last call."""

    def __init__(self) -> None:
        self._segment = TranscriptSegment()

    def received(self, header: bytes, tensor: np.ndarray) -> None:
        self._segment.received_headers.append(header)
        self._segment.received_tensors.append(tensor)

    def sent(self, header: bytes) -> None:
        self._segment.sent_headers.append(header)

    def take(self) -> TranscriptSegment:
        segment, self._segment = self._segment, TranscriptSegment()
        return segment
