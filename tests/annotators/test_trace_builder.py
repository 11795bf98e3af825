"""The trace builder: point choice, [0, 255] scaling, text, and steps with no future point."""

from __future__ import annotations

import numpy as np
import pytest

from armdata.schemas.sample import FLAG_NO_TRACE
from armdata.annotators.trace import (
    NO_TRACE_FLAG,
    build_traces,
    from_uv255,
    select_indices,
    to_uv255,
    trace_text,
)

H, W = 256, 320


def _line(t: int) -> np.ndarray:
    """A point moving right along a line: u = 10 + 3 t, v = 20 + t."""
    s = np.arange(t, dtype=np.float64)
    return np.stack([10 + 3 * s, 20 + s], axis=1)


@pytest.mark.parametrize("steps", [1, 2, 5, 6, 100])
def test_trace_length_is_min_of_five_and_remaining_steps(steps):
    pts = _line(steps)
    traces = build_traces(pts, np.ones(steps, bool), H, W)
    assert len(traces) == steps
    for t, tr in enumerate(traces):
        assert tr is not None
        assert tr.shape == (min(5, steps - t), 2)
        assert tr.dtype == np.int64
        assert (tr >= 0).all() and (tr <= 255).all()


@pytest.mark.parametrize("steps", [1, 2, 5, 6, 100])
def test_trace_starts_at_current_step_and_ends_at_last_step(steps):
    pts = _line(steps)
    traces = build_traces(pts, np.ones(steps, bool), H, W)
    uv = to_uv255(pts, H, W)
    for t, tr in enumerate(traces):
        np.testing.assert_array_equal(tr[0], uv[t])
        np.testing.assert_array_equal(tr[-1], uv[-1])


def test_trace_uses_linspace_indices_for_long_episodes():
    pts = _line(100)
    traces = build_traces(pts, np.ones(100, bool), H, W)
    uv = to_uv255(pts, H, W)
    # Step 0: m = 100 remaining -> linspace(0, 99, 5, dtype=int) = [0, 24, 49, 74, 99].
    np.testing.assert_array_equal(traces[0], uv[[0, 24, 49, 74, 99]])
    # Step 94: m = 6 -> [0, 1, 2, 3, 5] offset by 94.
    np.testing.assert_array_equal(traces[94], uv[[94, 95, 96, 97, 99]])


def test_six_step_episode_first_trace_skips_exactly_one_point():
    pts = _line(6)
    tr = build_traces(pts, np.ones(6, bool), H, W)[0]
    np.testing.assert_array_equal(tr, to_uv255(pts[[0, 1, 2, 3, 5]], H, W))


def test_select_indices_matches_molmoact_rule():
    assert select_indices(0).tolist() == []
    assert select_indices(1).tolist() == [0]
    assert select_indices(3).tolist() == [0, 1, 2]
    assert select_indices(5).tolist() == [0, 1, 2, 3, 4]
    assert select_indices(7).tolist() == np.linspace(0, 6, 5, dtype=int).tolist()


def test_missing_points_are_skipped_not_invented():
    pts = _line(10)
    vis = np.ones(10, bool)
    vis[[2, 3, 4]] = False
    pts[5] = np.nan  # NaN counts as missing even when marked visible
    traces = build_traces(pts, vis, H, W)
    uv = to_uv255(pts[[0, 1, 6, 7, 8, 9]], H, W)
    valid = [0, 1, 6, 7, 8, 9]
    # Step 2 (missing itself) still gets a trace of the valid future points: 6, 7, 8, 9.
    np.testing.assert_array_equal(traces[2], uv[2:])
    # Step 0: 6 valid points -> linspace(0, 5, 5, int) = [0, 1, 2, 3, 5] into the valid list.
    np.testing.assert_array_equal(traces[0], to_uv255(pts[[valid[i] for i in (0, 1, 2, 3, 5)]], H, W))


def test_steps_after_the_last_valid_point_get_no_trace():
    pts = _line(8)
    vis = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    traces = build_traces(pts, vis, H, W)
    assert all(tr is not None for tr in traces[:5])
    assert traces[5:] == [None, None, None]
    assert traces[4].shape == (1, 2)
    assert NO_TRACE_FLAG == FLAG_NO_TRACE == "no_trace"


def test_episode_with_no_valid_point_has_no_trace_at_all():
    pts = np.full((4, 2), np.nan)
    assert build_traces(pts, np.zeros(4, bool), H, W) == [None] * 4


def test_scaling_is_inverse_of_loader_drawing_map():
    # Corners map to 0 and 255 exactly; the loader's map brings them back to the corner pixels.
    corners = np.array([[0.0, 0.0], [W - 1, H - 1]])
    np.testing.assert_array_equal(to_uv255(corners, H, W), [[0, 0], [255, 255]])
    rng = np.random.default_rng(0)
    pix = np.stack([rng.integers(0, W, 500), rng.integers(0, H, 500)], 1).astype(float)
    back = from_uv255(to_uv255(pix, H, W), H, W)
    # 255 levels over 319 pixels: a round trip is off by at most (W-1)/255/2 + 0.5 pixel.
    assert np.abs(back - pix).max() <= 1.0


def test_out_of_image_points_are_clipped():
    pts = np.array([[-5.0, 300.0], [400.0, -1.0]])
    np.testing.assert_array_equal(to_uv255(pts, H, W), [[0, 255], [255, 0]])


def test_scaling_uses_width_for_u_and_height_for_v():
    uv = to_uv255(np.array([[159.5, 159.5]]), 320, 640)
    assert uv.tolist() == [[int(np.rint(159.5 * 255 / 639)), int(np.rint(159.5 * 255 / 319))]]


def test_trace_text_format():
    assert trace_text(np.array([[1, 2], [30, 255]])) == "[[1, 2], [30, 255]]"
    assert trace_text(np.array([[0, 0]])) == "[[0, 0]]"
    with pytest.raises(ValueError):
        trace_text(np.zeros((0, 2)))


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        build_traces(np.zeros((3, 3)), np.ones(3, bool), H, W)
    with pytest.raises(ValueError):
        build_traces(np.zeros((3, 2)), np.ones(4, bool), H, W)
