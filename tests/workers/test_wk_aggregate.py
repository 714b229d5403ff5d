"""Aggregation rules: each computes what docs/WORKERS.md defines, and does not depend on input order."""

from __future__ import annotations

import numpy as np

from pol.workers.aggregate import aggregate, coordinate_median, fedavg, krum_select, trimmed_mean


def _w(*values: float) -> dict[str, np.ndarray]:
    return {"w": np.array(values, dtype=np.float32)}


G = _w(0.0, 0.0)


def test_fedavg_is_the_mean_of_updates() -> None:
    out = fedavg(G, [_w(1, 2), _w(3, 4)])
    assert out["w"].tolist() == [2.0, 3.0]


def test_fedavg_is_moved_by_one_scaled_update_and_median_is_not() -> None:
    ends = [_w(1, 1), _w(1.2, 0.8), _w(0.9, 1.1), _w(100, -100)]
    assert abs(fedavg(G, ends)["w"][0]) > 20
    mid = lambda a, b: (np.float32(a) + np.float32(b)) / np.float32(2)  # noqa: E731 - the two middle values
    assert coordinate_median(G, ends)["w"].tolist() == [mid(1, 1.2), mid(0.8, 1)]


def test_trimmed_mean_drops_the_extremes_per_coordinate() -> None:
    ends = [_w(1, 5), _w(2, 6), _w(3, 7), _w(1000, -1000)]
    out = trimmed_mean(G, ends, trim=1)
    assert out["w"].tolist() == [2.5, 5.5]
    assert trimmed_mean(G, ends[:2], trim=1)["w"].tolist() == coordinate_median(G, ends[:2])["w"].tolist()


def test_krum_selects_from_the_cluster_and_breaks_ties_by_the_lower_id() -> None:
    ends = [_w(1, 1), _w(1.1, 1), _w(1, 1.1), _w(50, 50)]
    assert krum_select(G, ends, f=1) in (0, 1, 2)
    result = aggregate("krum", G, [(4, ends[3]), (2, ends[1]), (1, ends[0]), (3, ends[2])], f=1)
    assert result.inputs == [1, 2, 3, 4] and result.selected in (1, 2, 3)
    twins = aggregate("krum", G, [(2, _w(1, 1)), (1, _w(1, 1))], f=0)
    assert twins.selected == 1


def test_results_do_not_depend_on_the_order_inputs_arrive_in() -> None:
    rng = np.random.default_rng(0)
    ends = [(w, {"a": rng.normal(size=(7, 3)).astype(np.float32), "n": np.array(w, dtype=np.int64)})
            for w in (1, 2, 3, 4, 5)]
    start = {"a": np.zeros((7, 3), np.float32), "n": np.array(0, dtype=np.int64)}
    for rule in ("fedavg", "replay_verified", "median", "trimmed_mean", "krum"):
        one = aggregate(rule, start, ends, f=1).weights
        two = aggregate(rule, start, list(reversed(ends)), f=1).weights
        assert all(one[k].tobytes() == two[k].tobytes() for k in one), rule


def test_integer_buffers_take_the_floor_of_the_mean() -> None:
    start = {"n": np.array(10, dtype=np.int64)}
    out = aggregate("median", start, [(1, {"n": np.array(13, np.int64)}), (2, {"n": np.array(14, np.int64)})])
    assert int(out.weights["n"]) == 13 and out.weights["n"].dtype == np.int64


def test_no_inputs_leave_the_global_model_unchanged() -> None:
    for rule in ("fedavg", "median", "trimmed_mean", "krum"):
        out = aggregate(rule, G, [])
        assert out.weights["w"].tolist() == [0.0, 0.0] and out.inputs == []


def test_each_rule_name_applies_its_own_rule() -> None:
    ends = [(1, _w(1, 5)), (2, _w(2, 6)), (3, _w(3, 7)), (4, _w(7, 11)), (5, _w(1000, -1000))]
    plain = [e for _, e in ends]
    assert aggregate("fedavg", G, ends).weights["w"].tolist() == fedavg(G, plain)["w"].tolist()
    assert aggregate("median", G, ends).weights["w"].tolist() == coordinate_median(G, plain)["w"].tolist()
    assert aggregate("trimmed_mean", G, ends, f=1).weights["w"].tolist() == trimmed_mean(G, plain, 1)["w"].tolist()
    krum = aggregate("krum", G, ends, f=1)
    assert krum.weights["w"].tolist() == plain[krum.selected - 1]["w"].tolist() and krum.selected != 5
    assert len({tuple(aggregate(r, G, ends, f=1).weights["w"].tolist())
                for r in ("fedavg", "median", "trimmed_mean", "krum")}) == 4
