"""The trace is drawn exactly as MolmoAct's released loader draws it."""

from __future__ import annotations

import cv2
import numpy as np

from armdata.annotators.draw import draw_trace, trace_to_pixels


def _reference(image: np.ndarray, trace) -> np.ndarray:
    # The loader's recipe, written out independently: map [0,255] to pixels by rint(x * (W-1) / 255), then one
    # cv2.line per segment, colour (0, 255, 255) on the RGB array, thickness 2, LINE_AA.
    h, w = image.shape[:2]
    out = image.copy()
    pts = [(int(np.clip(np.rint(u * (w - 1) / 255), 0, w - 1)), int(np.clip(np.rint(v * (h - 1) / 255), 0, h - 1)))
           for u, v in trace]
    for a, b in zip(pts, pts[1:]):
        cv2.line(out, a, b, (0, 255, 255), 2, cv2.LINE_AA)
    return out


def test_drawn_trace_equals_reference_drawing_pixel_for_pixel():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, size=(128, 160, 3), dtype=np.uint8)
    trace = [[10, 240], [60, 200], [128, 128], [200, 90], [255, 0]]
    drawn = draw_trace(image, trace)
    assert np.array_equal(drawn, _reference(image, trace))
    assert not np.array_equal(drawn, image)
    assert np.array_equal(image, _reference(image, []))  # input untouched


def test_line_pixels_are_cyan_in_rgb():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    drawn = draw_trace(image, [[0, 128], [255, 128]])
    row = drawn[32, 5:60]
    assert (row == [0, 255, 255]).all(axis=1).any()
    assert (drawn[..., 0] == 0).all()  # red channel never touched: cyan, not yellow


def test_points_map_with_the_loaders_rounding_and_clip():
    px = trace_to_pixels([[0, 0], [255, 255], [128, 64]], height=128, width=160)
    assert px.tolist() == [[0, 0], [159, 127], [int(np.rint(128 * 159 / 255)), int(np.rint(64 * 127 / 255))]]


def test_single_point_trace_draws_nothing():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    assert np.array_equal(draw_trace(image, [[100, 100]]), image)
