"""Which node the launcher blames when several stop (no processes needed)."""

from __future__ import annotations

from pol.split.launch import LaunchResult, NodeOutcome


def _outcome(rank: int, ended_at: float, stderr: str, code: int = 1) -> NodeOutcome:
    return NodeOutcome(rank, code, "", stderr, ended_at)


def test_a_refusing_node_is_blamed_over_one_that_lost_its_peer_in_the_same_interval() -> None:
    lost = _outcome(1, 5.0, "pol split node 1: stopped: DistBackendError: Connection closed by peer")
    refused = _outcome(2, 5.0, "pol split node 2: error: digest differs; the sender is node 1")
    result = LaunchResult([lost, refused, _outcome(0, 5.0, "", code=0)])
    assert result.first_failure is refused
    assert lost.lost_peer and not refused.lost_peer


def test_without_a_refusal_the_first_node_to_fail_is_blamed() -> None:
    early = _outcome(2, 4.0, "pol split node 2: stopped: RuntimeError: gloo timeout")
    late = _outcome(1, 6.0, "pol split node 1: stopped: RuntimeError: connection reset")
    assert LaunchResult([late, early]).first_failure is early
    assert LaunchResult([_outcome(0, 1.0, "", code=0)]).first_failure is None
