"""The access-level views are what the proofs and the challenge flow actually expose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scripts.privacy import runs, views

CFG = runs.TrainConfig(members=64, nonmembers=32, epochs=10, every=5)   # 20 steps, 5 checkpoints


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from pol.keys import generate_keypair

    d = tmp_path_factory.mktemp("privacy_views")
    key, pub = generate_keypair(d / "trainer")
    full = runs.record_target(CFG, d / "full.pol.h5", key, seed=3, split_seed=4)
    compact = runs.record_target(CFG, d / "compact.pol.h5", key, seed=3, split_seed=4, compact_k=1_000_000)
    challenge, response = views.challenge_and_respond(compact, d, segments=2, seed=7)
    return {"dir": d, "pub": pub, "full": full, "compact": compact, "challenge": challenge, "response": response}


def test_full_proof_view_holds_every_checkpoint_and_weights_view_only_the_last(recorded: dict[str, Any]) -> None:
    full = views.full_proof_view(recorded["full"])
    last = views.final_weights_view(recorded["full"])
    assert sorted(full.checkpoints) == list(range(CFG.num_checkpoints))
    assert list(last.checkpoints) == [CFG.num_checkpoints - 1]
    assert all(np.array_equal(last.checkpoints[4][k], full.checkpoints[4][k]) for k in full.checkpoints[4])
    assert not np.array_equal(full.checkpoints[0]["fc1.weight"], full.checkpoints[4]["fc1.weight"])


def test_full_proof_view_refuses_a_compact_proof(recorded: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a full proof"):
        views.full_proof_view(recorded["compact"])


def test_compact_challenged_view_is_the_challenged_states_and_nothing_more(recorded: dict[str, Any]) -> None:
    from pol.proof_file import ProofReader

    view = views.compact_challenged_view(recorded["compact"], recorded["challenge"], recorded["response"])
    full = views.full_proof_view(recorded["full"])
    assert len(view.segments) in (2, 3) and CFG.num_checkpoints - 2 in view.segments  # 2 drawn + the last one
    expected = {0, CFG.num_checkpoints - 1} | {j for j in view.segments} | {j + 1 for j in view.segments}
    assert set(view.checkpoints) == expected
    for i, w in view.checkpoints.items():           # the same run: bitwise equal to the full proof's
        assert all(np.array_equal(w[k], full.checkpoints[i][k]) for k in w)
    with ProofReader(recorded["full"]) as reader:   # the batches a verifier replays, as recorded
        replayed = np.concatenate([reader.indices(CFG.checkpoint_step(j), CFG.checkpoint_step(j + 1)).ravel()
                                   for j in view.segments])
    assert np.array_equal(view.disclosed, np.unique(replayed))


def test_the_challenged_compact_proof_verifies(recorded: dict[str, Any]) -> None:
    assert views.verify_challenged(recorded["compact"], recorded["pub"], recorded["challenge"],
                                   recorded["response"]) == 0


def test_a_response_to_another_challenge_is_refused(recorded: dict[str, Any], tmp_path: Path) -> None:
    other, response = views.challenge_and_respond(recorded["compact"], tmp_path, segments=2, seed=8)
    assert views.verify_challenged(recorded["compact"], recorded["pub"], recorded["challenge"], response) == 2
