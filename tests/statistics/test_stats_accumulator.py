"""The mergeable statistics accumulator: equal to numpy however the data is split and merged; the sketch's
stated rank error bound holds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armdata.pipeline.sources.rlds import DataLocationError
from armdata.pipeline.statistics.actions import (
    BlockAccumulator,
    DatasetAccumulator,
    QuantileSketch,
    cache_key,
    dataset_info_digest,
)
from armdata.schemas.errors import RecordError


def _episodes(seed: int, n_eps: int, max_len: int = 12, proprio: bool = True):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_eps):
        t = int(rng.integers(1, max_len))
        a = rng.normal(0, [0.01, 0.02, 0.01, 0.1, 0.1, 0.2, 0.5], size=(t, 7)).astype(np.float32)
        a[:, 6] = rng.integers(0, 2, t)
        p = rng.normal(0, 1, size=(t, 5)).astype(np.float32) if proprio else None
        out.append((a, p))
    return out


def _numpy_block(x: np.ndarray) -> dict:
    x = x.astype(np.float64)
    return {"mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0),
            "q01": np.quantile(x, 0.01, axis=0), "q99": np.quantile(x, 0.99, axis=0)}


def _merge_in_groups(eps, cuts, order_seed):
    """Accumulate episodes in groups split at `cuts`, then merge the groups in a shuffled tree."""
    groups, start = [], 0
    for c in sorted(set(cuts)) + [len(eps)]:
        acc = DatasetAccumulator()
        for a, p in eps[start:c]:
            acc.add_episode(a, p)
        groups.append(acc)
        start = c
    rng = np.random.default_rng(order_seed)
    while len(groups) > 1:
        i, j = sorted(rng.choice(len(groups), 2, replace=False))
        groups[i].merge(groups[j])
        groups[i].compact()
        groups.pop(j)
    return groups[0]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 25), st.lists(st.integers(0, 25), max_size=6), st.integers(0, 99))
def test_statistics_equal_numpy_for_any_split_and_merge_order(seed, n_eps, cuts, order_seed):
    eps = _episodes(seed, n_eps)
    cuts = [c for c in cuts if c <= n_eps]
    acc = _merge_in_groups(eps, cuts, order_seed)
    if acc.num_transitions < 2:
        return
    stats = acc.to_statistics("ds")
    for block, idx in (("action", 0), ("proprio", 1)):
        ref = _numpy_block(np.concatenate([e[idx] for e in eps]))
        for k, v in ref.items():
            np.testing.assert_allclose(stats[block][k], v, rtol=0, atol=1e-9, err_msg=f"{block}.{k}")
    assert stats["num_transitions"] == sum(len(e[0]) for e in eps)
    assert stats["num_trajectories"] == n_eps
    assert stats["action"]["mask"] == [True] * 6 + [False]
    assert stats["armdata"]["quantile_rank_error_bound"] == 0.0


def test_std_is_accurate_for_values_with_a_large_offset():
    # Naive E[x^2] - E[x]^2 loses every digit here; pairwise (Chan) merging does not.
    rng = np.random.default_rng(1)
    x = 1e6 + rng.normal(0, 1e-3, size=(4000, 1))
    acc = BlockAccumulator(1)
    for part in np.array_split(x, 37):
        b = BlockAccumulator(1)
        b.add(part)
        acc.merge(b)
    np.testing.assert_allclose(acc.result()["std"], x.std(0), rtol=1e-6)


def test_dataset_with_fewer_than_two_transitions_is_a_record_error():
    acc = DatasetAccumulator()
    acc.add_episode(np.zeros((1, 7), np.float32))
    with pytest.raises(RecordError) as e:
        acc.to_statistics("tiny")
    assert e.value.kind == "too_few_transitions" and e.value.source == "tiny"


def test_no_proprio_block_when_the_source_has_no_state():
    acc = DatasetAccumulator()
    acc.add_episode(np.zeros((3, 7), np.float32))
    assert "proprio" not in acc.to_statistics("ds")


def _true_rank_error(values: np.ndarray, sketch: QuantileSketch) -> float:
    """Largest |estimated rank - true rank| over all values, normalized by n."""
    s = np.sort(values)
    items = np.concatenate(sketch.levels)
    w = np.concatenate([np.full(lv.size, 2**h) for h, lv in enumerate(sketch.levels)])
    order = np.argsort(items)
    items, cum = items[order], np.cumsum(w[order])
    probe = np.unique(s)
    est = np.concatenate([[0], cum])[np.searchsorted(items, probe, side="right")]
    true = np.searchsorted(s, probe, side="right")
    return float(np.abs(est - true).max() / values.size)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.sampled_from([8, 32, 64]))
def test_sketch_rank_error_stays_within_its_stated_bound_across_merges(seed, parts, k):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 1, 3000), rng.exponential(1, 2000), np.round(rng.normal(0, 1, 1000), 1)])
    rng.shuffle(values)
    sketches = []
    for part in np.array_split(values, parts):
        s = QuantileSketch(k)
        for piece in np.array_split(part, 3):
            s.update(piece)
        sketches.append(s)
    total = sketches[0]
    for s in sketches[1:]:
        total.merge(s)
    assert total.n == values.size
    assert total.size < values.size
    assert _true_rank_error(values, total) <= total.normalized_rank_error
    # The estimated quantile's true rank is within the bound of the requested rank.
    for q in (0.01, 0.5, 0.99):
        est = total.quantile([q])[0]
        lo = np.searchsorted(np.sort(values), est, side="left") / values.size
        hi = np.searchsorted(np.sort(values), est, side="right") / values.size
        eps = total.normalized_rank_error + 1 / values.size
        assert lo - eps <= q <= hi + eps


def test_past_the_exact_limit_quantiles_come_from_the_sketch_with_a_stated_error():
    rng = np.random.default_rng(3)
    eps = [(rng.normal(0, 1, size=(500, 7)).astype(np.float32), None) for _ in range(40)]
    acc = DatasetAccumulator(exact_limit=5_000, sketch_k=256)
    halves = [DatasetAccumulator(exact_limit=5_000, sketch_k=256) for _ in range(2)]
    for i, (a, _) in enumerate(eps):
        halves[i % 2].add_episode(a)
    acc.merge(halves[0])
    acc.merge(halves[1])
    stats = acc.to_statistics("big")
    info = stats["armdata"]
    assert info["quantiles"].startswith("sketch")
    bound = info["quantile_rank_error_bound"]
    assert 0 < bound < 0.02
    allv = np.concatenate([a for a, _ in eps]).astype(np.float64)
    for d in range(7):
        col = np.sort(allv[:, d])
        for q, key in ((0.01, "q01"), (0.99, "q99")):
            r = np.searchsorted(col, stats["action"][key][d]) / col.size
            assert abs(r - q) <= bound + 1 / col.size
    # Moments stay exact whatever the quantile method.
    np.testing.assert_allclose(stats["action"]["mean"], allv.mean(0), atol=1e-12)
    np.testing.assert_allclose(stats["action"]["std"], allv.std(0), atol=1e-12)


def test_cache_key_changes_with_each_thing_it_depends_on():
    base = cache_key("src", "data", 10, 8)
    assert base == cache_key("src", "data", 10, 8)
    assert len({base, cache_key("src2", "data", 10, 8), cache_key("src", "data2", 10, 8),
                cache_key("src", "data", 11, 8), cache_key("src", "data", 10, 9)}) == 5


def test_dataset_info_digest_follows_the_builder_files(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{"splits": [1]}')
    (tmp_path / "features.json").write_text("{}")
    a = dataset_info_digest(str(tmp_path))
    (tmp_path / "dataset_info.json").write_text('{"splits": [2]}')
    assert dataset_info_digest(str(tmp_path)) != a
    with pytest.raises(DataLocationError, match="no TFDS builder directory"):
        dataset_info_digest(str(tmp_path / "missing"))
