"""The ``cotracker`` tracker: an adapter for CoTracker3 (offline, and online/windowed for long episodes).

CoTracker3's code and weights are licensed CC-BY-NC 4.0 (non-commercial): armdata does not ship or install them,
and records the license in the provenance of every output made with it. Install them yourself:

    pip install 'armdata[cotracker]'   # = pip install git+https://github.com/facebookresearch/co-tracker
    # checkpoints from https://huggingface.co/facebook/cotracker3 : scaled_offline.pth, scaled_online.pth

then pass ``--tracker cotracker --tracker-checkpoint /path/to/scaled_offline.pth`` (offline) or
``scaled_online.pth`` (online); ``--tracker-device cuda`` on GPU workers.

Offline mode sees the whole video at once (best quality, memory grows with T: long videos run out of GPU memory);
online mode slides a window of ``window_len`` frames with half-window steps and tracks backwards on the reversed
video for frames before a query. ``mode="auto"`` picks offline up to ``offline_max_frames`` frames.

Call contract used (the official predictors): offline
``predictor(video[B,T,3,H,W] float 0..255, queries=[B,N,3] (t, x, y), backward_tracking=True) -> (tracks [B,T,N,2],
visibility [B,T,N] bool)``; online ``predictor(video_chunk=..., is_first_step=True, queries=...)`` once, then
``predictor(video_chunk=video[:, i : i + 2 * step])`` for i = 0, step, 2 * step, ... with ``predictor.step``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from armdata.annotators.extras import require_extra
from armdata.annotators.track.base import TRACKERS, TrackResult, check_inputs
from armdata.schemas.errors import ArmdataError

NAME = "cotracker"
LICENSE = "CC-BY-NC-4.0 (CoTracker3 code and weights, facebookresearch/co-tracker): non-commercial use only"
CHECKPOINT_HELP = (
    "give the CoTracker3 checkpoint with --tracker-checkpoint PATH (or --set trace.tracker_checkpoint=PATH): "
    "scaled_offline.pth or scaled_online.pth from https://huggingface.co/facebook/cotracker3"
)


def check_checkpoint(checkpoint: str | None) -> None:
    """A named error where the checkpoint is not given or not there (the driver calls it before a job starts)."""
    if not checkpoint:
        raise ArmdataError(f"the cotracker tracker needs a checkpoint: {CHECKPOINT_HELP}")
    if "://" not in checkpoint and not os.path.exists(checkpoint):
        raise ArmdataError(f"CoTracker3 checkpoint not found: {checkpoint!r}; {CHECKPOINT_HELP}")


class CoTrackerTracker:
    """CoTracker3 behind the Tracker contract. ``predictor`` may be handed in ready-made (tests use a stand-in with
    the same call signature); otherwise ``setup()`` builds the official predictor from ``checkpoint``."""

    name = NAME

    def __init__(
        self,
        checkpoint: str | None = None,
        mode: Literal["offline", "online", "auto"] = "auto",
        window_len: int | None = None,
        offline_max_frames: int = 300,
        device: str = "cpu",
        predictor: Any = None,
        online_predictor: Any = None,
    ) -> None:
        if mode not in ("offline", "online", "auto"):
            raise ValueError(f"mode must be offline, online or auto, got {mode!r}")
        self.checkpoint = checkpoint
        self.mode = mode
        self.window_len = window_len
        self.offline_max_frames = offline_max_frames
        self.device = device
        self._offline = predictor
        self._online = online_predictor

    def setup(self) -> None:
        if self._offline is not None or self._online is not None:
            return
        require_extra("cotracker", "the cotracker tracker")
        check_checkpoint(self.checkpoint)
        from cotracker.predictor import CoTrackerOnlinePredictor, CoTrackerPredictor

        online = self.mode == "online" or "online" in os.path.basename(self.checkpoint)
        if online:
            kw = {"window_len": self.window_len} if self.window_len else {}
            self._online = CoTrackerOnlinePredictor(checkpoint=self.checkpoint, **kw).to(self.device)
        else:
            kw = {"window_len": self.window_len} if self.window_len else {}
            self._offline = CoTrackerPredictor(checkpoint=self.checkpoint, **kw).to(self.device)

    def provenance(self) -> dict[str, Any]:
        return {"tracker": NAME, "license": LICENSE, "checkpoint": self.checkpoint, "mode": self.mode,
                "window_len": self.window_len}

    def _use_online(self, t: int) -> bool:
        if self._offline is None:
            return True
        if self._online is None:
            return False
        return self.mode == "online" or (self.mode == "auto" and t > self.offline_max_frames)

    def track(self, frames: np.ndarray, queries: np.ndarray, size_px: float | None = None) -> TrackResult:
        import torch

        frames, q = check_inputs(frames, queries)
        t = frames.shape[0]
        if self._offline is None and self._online is None:
            raise ArmdataError("cotracker: setup() was not called")
        if q.shape[0] == 0 or t == 0:
            return TrackResult(np.zeros((t, q.shape[0], 2), np.float32), np.zeros((t, q.shape[0]), bool))
        video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float().to(self.device)  # [1, T, 3, H, W]
        qt = torch.from_numpy(q).float()[None].to(self.device)  # [1, N, 3] (t, x, y)
        with torch.inference_mode():
            if self._use_online(t):
                tracks, vis = self._online_both_ways(video, qt)
            else:
                tracks, vis = self._offline(video, queries=qt, backward_tracking=True)
        return TrackResult(
            tracks[0].detach().cpu().numpy().astype(np.float32), vis[0].detach().cpu().numpy().astype(bool)
        )

    def _online_pass(self, video, queries):
        """Forward-only windowed pass over the whole video: tracks [1, T, N, 2], vis [1, T, N]."""
        import torch

        p = self._online
        t = video.shape[1]
        step = int(p.step)
        p(video_chunk=video[:, : 2 * step], is_first_step=True, queries=queries)
        tracks = vis = None
        starts = list(range(0, max(1, t - step), step))
        for i in starts:
            tracks, vis = p(video_chunk=video[:, i : i + 2 * step])
        # The last window may stop short of T (a video shorter than 2 steps, or a remainder): pad it to T.
        if tracks.shape[1] < t:
            pad = t - tracks.shape[1]
            tracks = torch.cat([tracks, tracks[:, -1:].expand(-1, pad, -1, -1)], 1)
            vis = torch.cat([vis, torch.zeros_like(vis[:, -1:]).expand(-1, pad, -1)], 1)
        return tracks[:, :t], vis[:, :t]

    def _online_both_ways(self, video, queries):
        """Online tracks forward from each query; frames before a query come from a pass on the reversed video."""
        t = video.shape[1]
        fwd, fvis = self._online_pass(video, queries)
        if bool((queries[0, :, 0] > 0).any()):
            rq = queries.clone()
            rq[:, :, 0] = t - 1 - rq[:, :, 0]
            bwd, bvis = self._online_pass(video.flip(1), rq)
            bwd, bvis = bwd.flip(1), bvis.flip(1)
            import torch

            before = torch.arange(t, device=video.device)[:, None] < queries[0, :, 0][None, :]  # [T, N]
            fwd = torch.where(before[None, :, :, None], bwd, fwd)
            fvis = torch.where(before[None], bvis, fvis)
        return fwd, fvis


TRACKERS.register(NAME, CoTrackerTracker)
