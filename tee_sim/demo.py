"""Built-in demo enclave functions (used by ``pol tee attest``).

Each is ``fn(data: bytes, config: Mapping) -> bytes`` and deterministic, so the same input,
config and code give the same output and the same ``mr_enclave`` on every machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any


def digest_stats(data: bytes, config: Mapping[str, Any]) -> bytes:
    """A toy verification job: SHA-256 of the input, its length and byte histogram summary."""
    counts = [0] * 256
    for b in data:
        counts[b] += 1
    top = int(config.get("top", 3))
    most = sorted(range(256), key=lambda b: (-counts[b], b))[:top]
    doc = {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data), "most_common": most}
    return json.dumps(doc, sort_keys=True).encode()


def linear_fit(data: bytes, config: Mapping[str, Any]) -> bytes:
    """A toy training segment: full-batch gradient descent for y = w*x + b on "x,y" lines."""
    points = []
    for line in data.decode("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            x_text, y_text = line.split(",")
            points.append((float(x_text), float(y_text)))
    w, b = float(config.get("w0", 0.0)), float(config.get("b0", 0.0))
    lr, steps = float(config.get("lr", 0.05)), int(config.get("steps", 200))
    n = max(len(points), 1)
    for _ in range(steps):
        gw = sum(2 * (w * x + b - y) * x for x, y in points) / n
        gb = sum(2 * (w * x + b - y) for x, y in points) / n
        w, b = w - lr * gw, b - lr * gb
    loss = sum((w * x + b - y) ** 2 for x, y in points) / n
    return json.dumps({"w": w, "b": b, "loss": loss, "n": len(points), "steps": steps}, sort_keys=True).encode()


#: name -> (function, default config)
DEMO_FUNCTIONS: dict[str, tuple[Callable[[bytes, Mapping[str, Any]], bytes], dict[str, Any]]] = {
    "digest-stats": (digest_stats, {"top": 3}),
    "linear-fit": (linear_fit, {"lr": 0.05, "steps": 200}),
}
