"""What one node process is asked to do: the runs, keys and limits (a JSON file, trusted: the
operator writes it). Every process of a job reads the same file; ``pol workers train`` writes it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pol.errors import InputError
from pol.workers.plan import EXCLUSIONS, RULES


@dataclass(frozen=True)
class RunSpec:
    """One federated training run (one plan, one coordinator log)."""

    out: str
    task: str = "digits-mlp"
    rounds: int = 10
    local_steps: int = 10
    batch_size: int = 32
    lr: float | None = None             # None: the task's
    optimizer: str | None = None        # None: the task's (digits: SGD, momentum 0.9)
    hparams: dict[str, Any] | None = None
    seed: int = 0
    aggregator: str = "replay_verified"
    f: int = 1                          # malicious workers assumed by trimmed mean and Krum
    replay_fraction: float = 1.0        # share of admissible submissions replayed each round
    exclusion: str = "ban"              # ban: a rejected worker is out for the run; drop: this round only
    round_timeout_s: float = 60.0
    behaviours: dict[str, str] = field(default_factory=dict)   # worker id -> behaviour (default honest)

    def __post_init__(self) -> None:
        if self.aggregator not in RULES:
            raise InputError(f"unknown aggregator {self.aggregator!r}; expected one of {', '.join(RULES)}")
        if self.exclusion not in EXCLUSIONS:
            raise InputError(f"unknown exclusion policy {self.exclusion!r}; expected one of {', '.join(EXCLUSIONS)}")
        if not 0.0 <= self.replay_fraction <= 1.0:
            raise InputError("--replay-fraction must lie in [0, 1]")
        if min(self.rounds, self.local_steps, self.batch_size) <= 0 or self.round_timeout_s <= 0:
            raise InputError("rounds, local steps, batch size and the round timeout must be positive")

    def behaviour_of(self, worker: int) -> str:
        return self.behaviours.get(str(worker), "honest")


@dataclass(frozen=True)
class NodeConfig:
    runs: list[RunSpec]
    coordinator_key: str
    worker_keys: str                    # path template with {rank}, e.g. keys/worker{rank}.key
    behaviour_module: str = "scripts.attacks_workers"
    threads: int = 1
    device: str = "auto"
    overwrite: bool = False
    idle_timeout_s: float = 900.0       # how long a worker waits for the coordinator's next message
    max_message_bytes: int = 64 << 20
    summary: str | None = None          # coordinator: JSON summary of every run (timings, verdicts)
    verbose: bool = True                # one line per round on stderr

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "NodeConfig":
        try:
            obj = json.loads(Path(path).read_text())
            return cls(**{**obj, "runs": [RunSpec(**r) for r in obj["runs"]]})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise InputError(f"cannot read node config {path}: {exc}") from None
