"""The honest inputs every mutation starts from, made with the ``pol`` CLI itself.

Small on purpose (a few seconds to verify): digits-mlp, 8 steps, a checkpoint every 4 steps.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from scripts.fuzz.runner import ACCEPT, Case, Outcome, Runner


@dataclass(frozen=True)
class Corpus:
    root: Path

    def __getattr__(self, name: str) -> Path:  # corpus.full -> root/full.pol.h5 etc.
        files = {"full": "full.pol.h5", "raw": "raw.pol.h5", "compact": "compact.pol.h5", "zk": "zk.pol.h5",
                 "weights": "model.safetensors", "challenge": "challenge.json", "response": "response.h5",
                 "key": "keys/trainer.key", "pub": "keys/trainer.pub", "forger_key": "keys/forger.key",
                 "forger_pub": "keys/forger.pub", "tee": "tee", "tee_input": "tee-input.txt"}
        if name not in files:
            raise AttributeError(name)
        return self.root / files[name]

    @property
    def tee_nonce(self) -> str:
        return (self.root / "tee-nonce.txt").read_text().strip()

    def verify_args(self, proof: str | Path, key: Path | None = None) -> list[str]:
        return ["verify", str(proof), "--key", str(key or self.pub), "--segments", "1", "--seed", "0", "--json"]

    def tee_args(self, quote: str | Path, state: str | Path, extra: list[str] | None = None) -> list[str]:
        return ["tee", "verify", str(quote), "--policy", str(Path(state) / "policy.json"), "--nonce", self.tee_nonce,
                "--input", str(self.tee_input), "--state", str(state), "--no-refresh", "--json", *(extra or [])]


def build_corpus(root: Path, runner: Runner) -> Corpus:
    """Keys, three proofs (delta-zstd, raw, compact), a /zk section, a safetensors export, a
    challenge and its response, and a simulated TEE quote; raises if any step fails."""
    c = Corpus(root)
    if (root / "corpus.json").exists():  # built by an earlier run in the same workdir
        return c
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    train = ["train", "--task", "digits-mlp", "--steps", "8", "--every", "4", "--seed", "1", "--key", str(c.key)]
    (root / "tee-input.txt").write_text("1.0\n2.0\n3.5\n")
    stages: list[list[list[str]]] = [
        [["keygen", "--out", str(root / "keys/trainer")], ["keygen", "--out", str(root / "keys/forger")],
         ["tee", "init", "--state", str(c.tee)]],
        [[*train, "--out", str(c.full)], [*train, "--out", str(c.raw), "--codec", "raw"],
         ["train", "--task", "digits-mlp", "--steps", "12", "--every", "2", "--compact", "3", "--seed", "1",
          "--key", str(c.key), "--out", str(c.compact)]],
        [["export", str(c.full), "--out", str(c.weights)], ["challenge", str(c.compact), "--out", str(c.challenge),
                                                           "--seed", "0", "--segments", "2"],
         ["tee", "nonce", "--state", str(c.tee), "--ttl", "864000"]],
        [["respond", str(c.compact), "--challenge", str(c.challenge), "--out", str(c.response)]],
    ]
    for stage in stages:
        _run_all(runner, root, stage)
    nonce = _stdout_of(runner, root, ["tee", "nonce", "--state", str(c.tee), "--ttl", "864000"]).strip()
    (root / "tee-nonce.txt").write_text(nonce + "\n")
    _run_all(runner, root, [["tee", "attest", str(c.tee_input), "--nonce", nonce, "--out", str(root / "tee-ev"),
                             "--state", str(c.tee)]])
    shutil.copy(c.full, c.zk)
    _run_all(runner, root, [["zk", "commit", str(c.zk), "--key", str(c.key), "--secrets-out",
                             str(root / "zk-secrets.h5")]])
    (root / "corpus.json").write_text(json.dumps({"files": sorted(p.name for p in root.iterdir())}))
    return c


def _run_all(runner: Runner, root: Path, commands: list[list[str]]) -> list[Outcome]:
    results: list[Outcome] = []
    cases = [Case("corpus", "setup", " ".join(cmd[:2]), cmd, ACCEPT) for cmd in commands]
    runner.run(cases, root / ".setup", lambda o: results.append(o) or True)
    for r in results:
        if r.code != 0:
            raise RuntimeError(f"building the corpus failed: pol {' '.join(r.case.argv)} -> {r.code}: {r.stderr[-600:]}")
    return results


def _stdout_of(runner: Runner, root: Path, command: list[str]) -> str:
    return _run_all(runner, root, [command])[0].stdout
