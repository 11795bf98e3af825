"""MolmoAct's visual trace: up to 5 future end-effector points per step, as integers in [0, 255].

Pure numpy; no models, no Beam. The contract (DESIGN.md section 2, "Trace"):

- For step t, take the valid points from t to the episode's last step (m of them).
- Pick ``np.linspace(0, m - 1, 5, dtype=int)`` of them: all of them when m < 5 (the indices then repeat, so the
  unique ones are kept in order), and the single point when m == 1.
- Scale pixels to [0, 255] as the inverse of the map MolmoAct's loader draws with (``pixel = rint(x * (W-1) /
  255)``): ``clip(rint(u * 255 / (W-1)), 0, 255)``, and the same for v with H.
- A step with no valid future point gets no trace (None), never a made-up one; the caller flags it.
"""

from __future__ import annotations

import numpy as np

from armdata.schemas.sample import FLAG_NO_TRACE

#: MolmoAct's trace has at most 5 points.
MAX_TRACE_POINTS = 5
#: Flag written on a step that has no valid point from it to the episode's end.
NO_TRACE_FLAG = FLAG_NO_TRACE


def to_uv255(points_uv: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels (u, v) -> integers in [0, 255]: the inverse of the loader's ``rint(x * (W-1) / 255)``.

    Works on any [..., 2] array; NaN rows must be removed first (they have no integer value).
    """
    p = np.asarray(points_uv, dtype=np.float64)
    # Written in the formula's own order (u * 255 / (W-1)) so that halves round the same way as the spec;
    # one-pixel-wide images have no extent to scale, so everything lies at 0.
    out = np.zeros(p.shape, dtype=np.int64)
    if width > 1:
        out[..., 0] = np.clip(np.rint(p[..., 0] * 255.0 / (width - 1)), 0, 255)
    if height > 1:
        out[..., 1] = np.clip(np.rint(p[..., 1] * 255.0 / (height - 1)), 0, 255)
    return out


def from_uv255(uv255: np.ndarray, height: int, width: int) -> np.ndarray:
    """Integers in [0, 255] -> pixels, as MolmoAct's loader draws them (``rint(x * (W-1) / 255)``)."""
    p = np.asarray(uv255, dtype=np.float64)
    out = np.empty(p.shape, dtype=np.float64)
    out[..., 0] = np.rint(p[..., 0] * (width - 1) / 255.0)
    out[..., 1] = np.rint(p[..., 1] * (height - 1) / 255.0)
    return out


def select_indices(m: int, max_points: int = MAX_TRACE_POINTS) -> np.ndarray:
    """Which of m remaining valid points a trace keeps: ``linspace(0, m-1, max_points, dtype=int)``, unique.

    m >= max_points gives exactly max_points indices, first and last included; m < max_points gives all m.
    """
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    if m < max_points:
        return np.arange(m, dtype=np.int64)
    return np.linspace(0, m - 1, max_points, dtype=int).astype(np.int64)


def valid_mask(points_uv: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """A point counts when it is marked visible and both coordinates are finite."""
    p = np.asarray(points_uv)
    return np.asarray(visible, dtype=bool) & np.isfinite(p).all(axis=-1)


def trace_frame_indices(valid: np.ndarray, max_points: int = MAX_TRACE_POINTS) -> list[np.ndarray | None]:
    """Per step t, the frame indices its trace uses (int64 [k]), or None when no valid frame lies ahead.

    valid: bool [T], the steps whose point counts. Shared by the builder and by evaluations (which compare each
    trace point with the ground truth at the same frame).
    """
    if max_points < 1:
        raise ValueError("max_points must be >= 1")
    valid_steps = np.flatnonzero(np.asarray(valid, dtype=bool))
    out: list[np.ndarray | None] = []
    # valid_steps is sorted: the valid points from t on are valid_steps[searchsorted(t):].
    for t in range(len(valid)):
        future = valid_steps[np.searchsorted(valid_steps, t):]
        out.append(None if future.size == 0 else future[select_indices(future.size, max_points)])
    return out


def build_traces(
    points_uv: np.ndarray,
    visible: np.ndarray,
    height: int,
    width: int,
    max_points: int = MAX_TRACE_POINTS,
) -> list[np.ndarray | None]:
    """Per step t, the trace: int64 [k, 2] in [0, 255] with 1 <= k <= max_points, or None.

    points_uv: float [T, 2] pixel (u, v) of the end effector per step, NaN where missing.
    visible:   bool [T], False where the point is missing or not trusted.
    None means no valid point from t to the last step: the caller records NO_TRACE_FLAG for that step.
    """
    p = np.asarray(points_uv, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points_uv must be [T, 2], got {p.shape}")
    vis = np.asarray(visible, dtype=bool)
    if vis.shape != (p.shape[0],):
        raise ValueError(f"visible must be [T={p.shape[0]}], got {vis.shape}")
    ok = valid_mask(p, vis)
    uv255 = np.zeros((p.shape[0], 2), dtype=np.int64)
    if ok.any():
        uv255[ok] = to_uv255(p[ok], height, width)
    return [None if idx is None else uv255[idx].copy() for idx in trace_frame_indices(ok, max_points)]


def trace_text(trace: np.ndarray) -> str:
    """The trace as MolmoAct writes it: ``[[u, v], [u, v]]`` (integers, ", " separators)."""
    t = np.asarray(trace)
    if t.ndim != 2 or t.shape[1] != 2 or t.shape[0] == 0:
        raise ValueError(f"a trace is a non-empty [k, 2] array, got shape {t.shape}")
    return "[" + ", ".join(f"[{int(u)}, {int(v)}]" for u, v in t) + "]"
