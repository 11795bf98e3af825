"""Action normalization, bins, ids and chunks: the numeric contract MolmoAct's decoder reads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from armdata.annotators.actions.normalize import (
    BIN_CENTERS,
    BIN_WIDTH,
    N_BINS,
    ActionStats,
    bins_to_ids,
    chunk,
    decode,
    encode,
    ids_to_bins,
    ids_to_normalized,
    normalize,
    render_action_chunk_text,
    render_action_text,
    to_bins,
    unnormalize,
)

VOCAB = 151643  # Qwen2's base vocabulary size; any size >= 256 works the same way

finite = st.floats(min_value=-10.0, max_value=10.0, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def stats_and_action(draw):
    """Random per-dim bounds (some degenerate) and an action inside [q01, q99] on every dimension."""
    q01 = np.array(draw(st.lists(finite, min_size=7, max_size=7)), dtype=np.float64)
    width = np.array(draw(st.lists(st.floats(0.0, 5.0, width=32), min_size=7, max_size=7)), dtype=np.float64)
    q01[-1], width[-1] = 0.0, 1.0  # gripper: absolute opening in [0, 1]
    q99 = q01 + width
    frac = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7)))
    action = q01 + frac * (q99 - q01)
    mask = np.array([True] * 6 + [False])
    return ActionStats(q01=q01, q99=q99, mask=mask), action


def test_bin_layout_matches_molmoact():
    assert BIN_CENTERS.shape == (255,)
    assert BIN_WIDTH == pytest.approx(2 / 255)
    assert BIN_CENTERS[0] == pytest.approx(-1 + 1 / 255) and BIN_CENTERS[-1] == pytest.approx(1 - 1 / 255)


def test_normalize_maps_q01_q99_to_minus_one_and_one_and_clips_outside():
    stats = ActionStats(q01=np.array([0.0, -2.0]), q99=np.array([1.0, 2.0]), mask=np.array([True, False]))
    x = normalize(np.array([[0.0, -3.0], [1.0, 0.5], [0.25, 2.0], [5.0, 0.0]]), stats)
    np.testing.assert_allclose(x, [[-1.0, -1.0], [1.0, 0.5], [-0.5, 1.0], [1.0, 0.0]])


def test_normalize_is_zero_where_q99_equals_q01():
    stats = ActionStats(q01=np.array([0.3, 0.0]), q99=np.array([0.3, 1.0]), mask=np.array([True, False]))
    np.testing.assert_array_equal(normalize(np.array([[0.3, 1.0], [7.0, 0.0]]), stats)[:, 0], [0.0, 0.0])


def test_gripper_is_never_normalized_even_if_the_file_says_so():
    block = {"q01": [0.0] * 7, "q99": [2.0] * 7, "mask": [True] * 7}
    stats = ActionStats.from_json({"action": block})
    assert stats.mask.tolist() == [True] * 6 + [False]
    assert normalize(np.full(7, 1.0), stats).tolist() == [0.0] * 6 + [1.0]


def test_missing_mask_means_all_but_last_normalized():
    stats = ActionStats.from_json({"q01": [0.0] * 7, "q99": [1.0] * 7})
    assert stats.mask.tolist() == [True] * 6 + [False]


def test_digitize_bins_and_ids_at_the_edges():
    d = to_bins(np.array([-1.0, 0.0, 1.0]))
    assert d.tolist() == [1, 128, 256]
    assert bins_to_ids(d, VOCAB).tolist() == [VOCAB - 1, VOCAB - 128, VOCAB - 256]
    # Decoding: clip(vocab - id - 1, 0, 254); the top bin (x == 1) folds into the last centre.
    assert ids_to_bins(bins_to_ids(d, VOCAB), VOCAB).tolist() == [0, 127, 254]


def test_ids_outside_the_action_range_decode_clipped_like_molmoact():
    # An unknown symbol becomes id == vocab_size in MolmoAct: vocab - id - 1 = -1, clipped to centre 0.
    assert ids_to_bins(np.array([VOCAB, VOCAB - 1000]), VOCAB).tolist() == [0, 254]


def test_to_bins_rejects_values_outside_the_unit_interval():
    with pytest.raises(ValueError):
        to_bins(np.array([1.5]))
    with pytest.raises(ValueError):
        to_bins(np.array([np.nan]))


def test_normalize_rejects_wrong_width_and_non_finite():
    stats = ActionStats.from_json({"q01": [0.0] * 7, "q99": [1.0] * 7})
    with pytest.raises(ValueError):
        normalize(np.zeros((3, 6)), stats)
    with pytest.raises(ValueError):
        normalize(np.full(7, np.inf), stats)


@settings(max_examples=300, deadline=None)
@given(stats_and_action())
def test_decode_of_encode_is_within_half_a_bin_for_actions_inside_q01_q99(case):
    stats, action = case
    d, ids = encode(action, stats, VOCAB)
    back = ids_to_normalized(ids, VOCAB)
    assert np.all(np.abs(back - normalize(action, stats)) <= BIN_WIDTH / 2 + 1e-12)
    # And in action units, the error is at most half a bin of that dimension's range.
    err = np.abs(decode(ids, stats, VOCAB) - action)
    span = np.where(stats.mask, (stats.q99 - stats.q01) / 2, 1.0)
    assert np.all(err <= span * (BIN_WIDTH / 2) + 1e-9)


@settings(max_examples=300, deadline=None)
@given(stats_and_action(), arrays(np.float64, 7, elements=st.floats(-1e6, 1e6)),
       st.integers(min_value=N_BINS, max_value=200_000))
def test_ids_always_lie_in_the_last_256_of_the_vocabulary(case, action, vocab):
    stats, _ = case
    _, ids = encode(action, stats, vocab)
    assert ids.min() >= vocab - N_BINS and ids.max() <= vocab - 1


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, 7, elements=st.floats(-1.0, 1.0)))
def test_unnormalize_inverts_normalize_inside_the_bounds(x):
    stats = ActionStats(q01=np.linspace(-1, 0, 7), q99=np.linspace(0.5, 2, 7), mask=np.array([True] * 6 + [False]))
    np.testing.assert_allclose(normalize(unnormalize(x, stats), stats), x, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.integers(1, 12), st.data())
def test_chunks_have_n_rows_and_repeat_the_last_action_past_the_end(T, n, data):
    t = data.draw(st.integers(0, T - 1))
    actions = np.arange(T * 7, dtype=np.float32).reshape(T, 7)
    c = chunk(actions, t, n)
    assert c.shape == (n, 7) and c.dtype == actions.dtype
    real = min(n, T - t)
    np.testing.assert_array_equal(c[:real], actions[t:t + real])
    np.testing.assert_array_equal(c[real:], np.repeat(actions[-1:], n - real, axis=0))


def test_chunk_rejects_a_step_outside_the_episode():
    with pytest.raises(IndexError):
        chunk(np.zeros((3, 7)), 3)


def test_render_action_text_joins_symbols_with_comma_space():
    assert render_action_text(["a", "ĠÐ", "c"]) == "[a, ĠÐ, c]"
    assert render_action_chunk_text([["a", "b"], ["c", "d"]]) == "[[a, b], [c, d]]"


def test_decode_matches_molmoact_formula_written_out():
    stats = ActionStats.from_json({"q01": [-0.1] * 6 + [0.0], "q99": [0.3] * 6 + [1.0]})
    ids = np.array([VOCAB - 1, VOCAB - 50, VOCAB - 128, VOCAB - 200, VOCAB - 256, VOCAB - 17, VOCAB - 256])
    disc = np.clip(VOCAB - ids - 1, 0, 254)
    normalized = BIN_CENTERS[disc]
    expected = 0.5 * (normalized + 1) * (0.3 - -0.1) + -0.1
    expected[-1] = normalized[-1]
    np.testing.assert_allclose(decode(ids, stats, VOCAB), expected)
