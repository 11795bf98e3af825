"""How good are the traces? Trace-point error against ground truth, in MolmoAct's [0, 255] units.

Every trace point the pipeline would emit (step t, frame s chosen by the trace builder) is compared with the
ground-truth pixel at frame s, both scaled to [0, 255] the way the trace is written; the error is the Euclidean
distance in those units. Frames the pipeline marked valid but the ground truth marks invisible count as
``false_points``; steps the ground truth gives a trace but the pipeline does not count as ``missing_traces``.

Also here: ``StandInPointerFromGroundTruth``, a stand-in for the pointing VLM (whose weights cannot exist in tests
or CI) that answers from the episode's ground truth plus Gaussian noise and counts its calls like the real one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from armdata.annotators.locate import LocateResult
from armdata.annotators.locate.base import check_frame_indices
from armdata.annotators.trace import to_uv255, trace_frame_indices, valid_mask
from armdata.schemas.errors import RecordError
from armdata.schemas.records import StandardEpisode
from armdata.schemas.source import SourceConfig

GT_UV_KEY = "gripper_uv"  # episode_metadata field: float [T, 2] ground-truth pixels (the built-in sample has it)
GT_VISIBLE_KEY = "gripper_visible"  # episode_metadata field: bool [T]


def ground_truth(episode: StandardEpisode) -> tuple[np.ndarray, np.ndarray] | None:
    """(uv float64 [T, 2], visible bool [T]) from the episode's metadata, or None where it has none."""
    md = episode.metadata
    if GT_UV_KEY not in md:
        return None
    uv = np.asarray(md[GT_UV_KEY], dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(md.get(GT_VISIBLE_KEY, np.ones(len(uv), bool)), dtype=bool).reshape(-1)
    if uv.shape[0] != episode.num_steps or vis.shape[0] != episode.num_steps:
        raise RecordError(
            episode.source, episode.episode_key, None, GT_UV_KEY, "bad_shape",
            f"ground truth must have one row per step ({episode.num_steps}), got {uv.shape} and {vis.shape}",
        )
    return uv, vis


def evaluate_traces(
    points_uv: np.ndarray,
    visible: np.ndarray,
    gt_uv: np.ndarray,
    gt_visible: np.ndarray,
    height: int,
    width: int,
    max_points: int = 5,
) -> dict[str, Any]:
    """Trace-point errors of one episode against ground truth.

    Returns a dict: ``errors`` float64 [n] (every emitted trace point's error in [0, 255] units, for pooling over
    episodes with ``summarize``), ``mean``, ``p95``, ``max``, ``steps``, ``steps_with_trace``,
    ``gt_steps_with_trace``, ``missing_traces``, ``false_points`` and ``frame_err_px_mean`` (per-frame pixel error
    over frames valid in both).
    """
    p = np.asarray(points_uv, dtype=np.float64)
    g = np.asarray(gt_uv, dtype=np.float64)
    ok = valid_mask(p, visible)
    gok = valid_mask(g, gt_visible)
    pred_255 = np.zeros_like(p)
    gt_255 = np.zeros_like(g)
    pred_255[ok] = to_uv255(p[ok], height, width)
    gt_255[gok] = to_uv255(g[gok], height, width)
    pred_idx = trace_frame_indices(ok, max_points)
    gt_idx = trace_frame_indices(gok, max_points)
    errors: list[float] = []
    false_points = 0
    for idx in pred_idx:
        if idx is None:
            continue
        for s in idx:
            if gok[s]:
                errors.append(float(np.linalg.norm(pred_255[s] - gt_255[s])))
            else:
                false_points += 1
    both = ok & gok
    frame_err = np.linalg.norm(p[both] - g[both], axis=1) if both.any() else np.zeros(0)
    out = summarize([np.asarray(errors)])
    out.update(
        steps=int(len(p)),
        steps_with_trace=int(sum(i is not None for i in pred_idx)),
        gt_steps_with_trace=int(sum(i is not None for i in gt_idx)),
        missing_traces=int(sum(a is None and b is not None for a, b in zip(pred_idx, gt_idx))),
        false_points=int(false_points),
        frame_err_px_mean=float(frame_err.mean()) if frame_err.size else float("nan"),
    )
    return out


def summarize(errors: Iterable[np.ndarray]) -> dict[str, Any]:
    """Pool per-episode ``errors`` arrays: mean, 95th percentile, max and count (NaN when empty)."""
    e = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in errors] or [np.zeros(0)])
    if e.size == 0:
        return {"errors": e, "mean": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
    return {"errors": e, "mean": float(e.mean()), "p95": float(np.percentile(e, 95)), "max": float(e.max()),
            "n": int(e.size)}


class StandInPointerFromGroundTruth:
    """Stand-in for the pointing VLM: answers the ground-truth pixel plus N(0, noise_px) noise, "not found" where
    the ground truth says the gripper is invisible, and counts calls per frame asked (as the real pointer does).
    Its registry name is "pointer" so that provenance and flags read as they would with the real model."""

    name = "pointer"

    def __init__(self, noise_px: float = 1.0, seed: int = 0, confidence: float = 0.9) -> None:
        self.noise_px = noise_px
        self.rng = np.random.default_rng(seed)
        self.confidence = confidence
        self.calls = 0

    def setup(self) -> None:
        """Nothing to load."""

    def provenance(self) -> dict[str, Any]:
        return {"stand_in": type(self).__name__, "noise_px": self.noise_px}

    def locate(
        self, episode: StandardEpisode, source: SourceConfig, frame_indices: Sequence[int]
    ) -> list[LocateResult]:
        idx = check_frame_indices(episode, frame_indices)
        gt = ground_truth(episode)
        if gt is None:
            raise RecordError(source.name, episode.episode_key, None, GT_UV_KEY, "missing_ground_truth",
                              "the stand-in pointer answers from episode_metadata/gripper_uv")
        uv, vis = gt
        h, w = episode.image_size
        self.calls += len(idx)
        out = []
        for i in idx:
            if not vis[i] or not np.isfinite(uv[i]).all():
                out.append(LocateResult.not_found(self.name, "no_point"))
                continue
            p = uv[i] + self.rng.normal(0.0, self.noise_px, 2)
            p = np.clip(p, 0, [w - 1, h - 1])
            out.append(LocateResult((float(p[0]), float(p[1])), self.confidence, self.name))
        return out
