"""The ``detector`` locator: an open-vocabulary detector (OWLv2 through transformers) asked for "robot gripper";
the best box's centre is the point. A cheap alternative to a 7B pointing VLM for ``armdata locate``.

OWLv2 pads every image to a square (bottom and right) before resizing, so its boxes are relative to the padded
square: they are scaled by the longer side, then the centre must lie inside the real image. A best score below
``threshold`` is "not found", never a guess. The image processor is transformers' PIL one (it needs scipy, not
torchvision). Weights are never fetched on this module's own account: ``model`` is a local directory or a hub id
the user's cache or network provides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from armdata.annotators.extras import require_extra
from armdata.annotators.locate.base import LOCATORS, FrameLocator, LocateResult
from armdata.schemas.errors import ArmdataError
from armdata.schemas.records import as_frames

NAME = "detector"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorConfig:
    """How the detector is loaded and asked."""

    model: str  # local checkpoint directory or hub id of an OWLv2 model (google/owlv2-base-patch16-ensemble)
    prompt: str = "robot gripper"  # the text query, as ECoT asked OWLv2 for Bridge's gripper
    threshold: float = 0.1  # best box score below this: not found (OWLv2's scores are sigmoid logits)
    batch_size: int = 8  # frames per forward pass
    device: str = "cpu"  # "cuda" on a GPU worker; asking for cuda without one raises


class DetectorLocator(FrameLocator):
    """Finds the gripper as the centre of the detector's best box for ``prompt``; ``calls`` counts frames asked."""

    name = NAME

    def __init__(self, cfg: DetectorConfig | None = None, **kwargs: Any) -> None:
        self.cfg = cfg if cfg is not None else DetectorConfig(**kwargs)
        self.model: Any = None
        self.processor: Any = None
        self.calls = 0

    def setup(self) -> None:
        """Load the processor and model once (call again: no-op)."""
        if self.model is not None:
            return
        import torch
        from transformers import AutoProcessor, Owlv2ForObjectDetection

        require_extra("detector", "the detector locator (OWLv2)")
        if self.cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise ArmdataError(f"detector: device {self.cfg.device!r} asked for but CUDA is not available")
        self.processor = AutoProcessor.from_pretrained(self.cfg.model)
        self.model = Owlv2ForObjectDetection.from_pretrained(self.cfg.model).to(self.cfg.device).eval()

    def provenance(self) -> dict[str, Any]:
        return {"model": self.cfg.model, "prompt": self.cfg.prompt, "threshold": self.cfg.threshold}

    def _boxes(self, frames: np.ndarray) -> list[tuple[np.ndarray | None, float]]:
        import torch

        h, w = frames.shape[1:3]
        side = max(h, w)
        inputs = self.processor(text=[[self.cfg.prompt]] * len(frames), images=list(frames), return_tensors="pt")
        inputs = {k: v.to(self.cfg.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs)
        res = self.processor.post_process_grounded_object_detection(
            out, threshold=0.0, target_sizes=torch.tensor([[side, side]] * len(frames))
        )
        best = []
        for r in res:
            if len(r["scores"]) == 0:
                best.append((None, 0.0))
                continue
            i = int(torch.argmax(r["scores"]))
            best.append((r["boxes"][i].detach().cpu().numpy().astype(np.float64), float(r["scores"][i])))
        return best

    def locate_frames(self, frames: np.ndarray) -> list[LocateResult]:
        """Detect on frames uint8 [N, H, W, 3]; one result per frame."""
        if self.model is None:
            raise ArmdataError("detector: setup() was not called")
        frames = as_frames(frames, "N")
        h, w = frames.shape[1:3]
        out: list[LocateResult] = []
        for start in range(0, len(frames), max(1, self.cfg.batch_size)):
            chunk = frames[start : start + max(1, self.cfg.batch_size)]
            self.calls += len(chunk)
            for box, score in self._boxes(chunk):
                if box is None or score < self.cfg.threshold:
                    out.append(LocateResult.not_found(NAME, "no_box"))
                    continue
                u, v = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                if not (0 <= u <= w - 1 and 0 <= v <= h - 1):
                    out.append(LocateResult.not_found(NAME, "box_outside_image"))
                    continue
                size = float(min(box[2] - box[0], box[3] - box[1]))
                out.append(LocateResult((float(u), float(v)), float(np.clip(score, 0, 1)), NAME,
                                        size_px=size if size > 0 else None))
        return out


LOCATORS.register(NAME, DetectorLocator)
