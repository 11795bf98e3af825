"""The ``sam2`` tracker (optional): transformers' native SAM2 video model prompted with the point; the centroid of
the propagated mask is the track.

A mask follows the whole gripper through occlusion and motion blur better than a patch does, but its centroid is
the gripper's centre, not the exact queried point: the offset between the query and the first mask's centroid is
kept and added to later centroids. A frame with an empty mask is not visible. Needs a SAM2 checkpoint in the
transformers format (``Sam2VideoModel``) and its processor (which needs torchvision).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from armdata.annotators.extras import require_extra
from armdata.annotators.track.base import TRACKERS, TrackResult, check_inputs
from armdata.schemas.errors import ArmdataError

NAME = "sam2"


def check_checkpoint(model: str | None) -> None:
    """A named error where no checkpoint is given (the driver calls it before a job starts)."""
    if not model:
        raise ArmdataError("the sam2 tracker needs a model: --tracker-checkpoint DIR_OR_HUB_ID (or --set "
                           "trace.tracker_checkpoint=...), a Sam2Video checkpoint in the transformers format")


class Sam2Tracker:
    """SAM2 video, one object per query point, propagated forward and backward from its query frame."""

    name = NAME

    def __init__(self, model: str | None = None, device: str = "cpu", min_mask_px: int = 4) -> None:
        self.model_id = model
        self.device = device
        self.min_mask_px = min_mask_px
        self.model: Any = None
        self.processor: Any = None

    def setup(self) -> None:
        if self.model is not None:
            return
        check_checkpoint(self.model_id)
        require_extra("sam2", "the sam2 tracker")
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        self.processor = Sam2VideoProcessor.from_pretrained(self.model_id)
        self.model = Sam2VideoModel.from_pretrained(self.model_id).to(self.device).eval()

    def provenance(self) -> dict[str, Any]:
        return {"tracker": NAME, "model": self.model_id, "license": "Apache-2.0 (SAM 2)"}

    def track(self, frames: np.ndarray, queries: np.ndarray, size_px: float | None = None) -> TrackResult:
        import torch

        frames, q = check_inputs(frames, queries)
        if self.model is None:
            raise ArmdataError("sam2 tracker: setup() was not called")
        t, h, w = frames.shape[:3]
        n = q.shape[0]
        tracks = np.zeros((t, n, 2), np.float32)
        visible = np.zeros((t, n), bool)
        for j in range(n):
            t0 = int(q[j, 0])
            for reverse in (False, True):
                session = self.processor.init_video_session(video=list(frames), inference_device=self.device)
                self.processor.add_inputs_to_inference_session(
                    inference_session=session, frame_idx=t0, obj_ids=1,
                    input_points=[[[[float(q[j, 1]), float(q[j, 2])]]]], input_labels=[[[1]]],
                )
                offset = None
                with torch.inference_mode():
                    for out in self.model.propagate_in_video_iterator(session, start_frame_idx=t0, reverse=reverse):
                        mask = self.processor.post_process_masks([out.pred_masks], original_sizes=[[h, w]])[0]
                        m = mask[0, 0].cpu().numpy().astype(bool) if mask.ndim == 4 else mask[0].cpu().numpy()
                        i = int(out.frame_idx)
                        if m.sum() < self.min_mask_px:
                            continue
                        vs, us = np.nonzero(m)
                        c = np.array([us.mean(), vs.mean()], np.float32)
                        if offset is None:
                            offset = np.array([q[j, 1], q[j, 2]], np.float32) - c if i == t0 else np.zeros(2, np.float32)
                        tracks[i, j] = c + offset
                        visible[i, j] = True
            tracks[t0, j] = q[j, 1:]
            visible[t0, j] = True
        return TrackResult(tracks, visible)


TRACKERS.register(NAME, Sam2Tracker)
