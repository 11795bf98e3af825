"""The ``pointer`` locator: a pointing VLM asked "point to the robot gripper", MolmoAct's own recipe.

Two model families:
- Molmo 2 (``model_type: molmo2``), native in transformers 5: ``AutoProcessor`` + ``AutoModelForImageTextToText``,
  batched generation with left padding. Its image processor needs torchvision.
- Molmo 1 (``allenai/Molmo-7B-D-0924``, MolmoAct's choice), whose code lives in the checkpoint: loaded only when
  the user allows ``trust_remote_code`` (it runs the checkpoint's Python), one frame per ``generate_from_batch``.

Answers are parsed by ``armdata.annotators.locate.parse`` (both point-tag formats); an answer without exactly one
usable point (or several close together, merged) is "not found", never a guess. Weights are never fetched by
this module on its own account: ``model`` is a local directory or a hub id the user's cache or network provides.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from armdata.annotators.locate.base import LOCATORS, FrameLocator, LocateResult
from armdata.annotators.locate.parse import choose_point, parse_points
from armdata.annotators.extras import require_extra
from armdata.schemas.errors import ArmdataError
from armdata.schemas.records import as_frames

NAME = "pointer"
log = logging.getLogger(__name__)

#: MolmoAct's prompt for the gripper.
BASE_PROMPT = "point to the robot gripper"


def gripper_prompt(arm: str | None = None) -> str:
    """The prompt: "point to the robot gripper", or "... on the left"/"... on the right" for two-arm robots."""
    if arm is None:
        return BASE_PROMPT
    if arm not in ("left", "right"):
        raise ValueError(f"arm must be None, 'left' or 'right', got {arm!r}")
    return f"{BASE_PROMPT} on the {arm}"


@dataclass(frozen=True)
class PointerConfig:
    """How the pointing VLM is loaded and asked."""

    model: str  # local checkpoint directory or hub id (Molmo2 native, or Molmo 1 with trust_remote_code)
    trust_remote_code: bool = False  # Molmo 1 runs code shipped in the checkpoint: only when the user allows it
    arm: Literal["left", "right"] | None = None  # two-arm robots: which gripper the prompt asks for
    batch_size: int = 8  # frames per generate call (Molmo 2); bounded by GPU memory
    max_new_tokens: int = 64  # a point tag is ~20-40 tokens; more only wastes time on rambling answers
    device: str = "cpu"  # "cuda" on a GPU worker; asking for cuda without one raises (no silent CPU fallback)
    dtype: str = "auto"  # torch dtype name, "auto" keeps the checkpoint's
    confidence: float = 0.9  # the VLM gives no score; one clean point earns this
    merge_frac: float = 0.05  # several points within this fraction of the image diagonal are one gripper


def _read_model_type(model: str) -> str:
    """The checkpoint's model_type, read from config.json without importing any remote code."""
    path = os.path.join(model, "config.json")
    if os.path.isdir(model):
        if not os.path.exists(path):
            raise ArmdataError(f"pointer model {model!r}: no config.json in that directory")
        with open(path, encoding="utf-8") as f:
            return str(json.load(f).get("model_type", ""))
    from transformers import PretrainedConfig

    cfg, _ = PretrainedConfig.get_config_dict(model)
    return str(cfg.get("model_type", ""))


class PointerLocator(FrameLocator):
    """Asks a pointing VLM for the gripper on each frame it is given; ``calls`` counts frames asked.

    ``processor_factory`` builds the processor from the checkpoint path (default: ``AutoProcessor.from_pretrained``);
    a composition root or a test may hand another that keeps the processor's call contract.
    """

    name = NAME

    def __init__(
        self,
        cfg: PointerConfig | None = None,
        processor_factory: Callable[[str], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.cfg = cfg if cfg is not None else PointerConfig(**kwargs)
        self.prompt = gripper_prompt(self.cfg.arm)
        self._processor_factory = processor_factory
        self.model: Any = None
        self.processor: Any = None
        self.family: str | None = None
        self.calls = 0

    # -- loading -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load the processor and model once (call again: no-op)."""
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

        cfg = self.cfg
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise ArmdataError(f"pointer: device {cfg.device!r} asked for but CUDA is not available")
        model_type = _read_model_type(cfg.model)
        if self._processor_factory is None and (model_type == "molmo2" or cfg.trust_remote_code):
            require_extra("molmo", "the pointer locator (Molmo)")  # Molmo's own processors need torchvision
        dtype = cfg.dtype if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        if model_type == "molmo2":
            self.family = "molmo2"
            self.processor = (
                self._processor_factory(cfg.model) if self._processor_factory else AutoProcessor.from_pretrained(cfg.model)
            )
            self.model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=dtype)
            self.processor.tokenizer.padding_side = "left"  # batched generation of a decoder-only model
        elif cfg.trust_remote_code:
            self.family = "remote"
            log.warning("pointer: loading %s with trust_remote_code (runs code shipped in the checkpoint)", cfg.model)
            self.processor = (
                self._processor_factory(cfg.model)
                if self._processor_factory
                else AutoProcessor.from_pretrained(cfg.model, trust_remote_code=True)
            )
            self.model = AutoModelForCausalLM.from_pretrained(cfg.model, trust_remote_code=True, dtype=dtype)
        else:
            raise ArmdataError(
                f"pointer model {cfg.model!r} has model_type {model_type!r}, which transformers does not implement "
                "natively (Molmo 2 is 'molmo2'). Molmo 1 checkpoints such as allenai/Molmo-7B-D-0924 run code "
                "shipped with the checkpoint: allow it with trust_remote_code=True (--pointer-trust-remote-code)."
            )
        self.model.to(cfg.device).eval()

    # -- asking ----------------------------------------------------------------------------------------------
    def answer_texts(self, frames: np.ndarray) -> list[str]:
        """The VLM's raw answers for frames uint8 [N, H, W, 3] (one per frame, in order)."""
        if self.model is None:
            raise ArmdataError("pointer: setup() was not called")
        frames = np.asarray(frames)
        out: list[str] = []
        for start in range(0, len(frames), max(1, self.cfg.batch_size)):
            chunk = frames[start : start + max(1, self.cfg.batch_size)]
            out.extend(self._molmo2_batch(chunk) if self.family == "molmo2" else [self._remote_one(f) for f in chunk])
            self.calls += len(chunk)
        return out

    def _molmo2_batch(self, frames: np.ndarray) -> list[str]:
        import torch

        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(
            images=[f for f in frames], text=[text] * len(frames), return_tensors="pt", padding=True
        ).to(self.cfg.device)
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens, do_sample=False)
        new = ids[:, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _remote_one(self, frame: np.ndarray) -> str:
        # Molmo 1's remote code: processor.process(images, text) per example, generate_from_batch with a batch of 1.
        import torch
        from PIL import Image
        from transformers import GenerationConfig

        inputs = self.processor.process(images=[Image.fromarray(frame)], text=self.prompt)
        inputs = {k: v.to(self.cfg.device).unsqueeze(0) for k, v in inputs.items()}
        with torch.inference_mode():
            ids = self.model.generate_from_batch(
                inputs,
                GenerationConfig(max_new_tokens=self.cfg.max_new_tokens, stop_strings="<|endoftext|>"),
                tokenizer=self.processor.tokenizer,
            )
        return self.processor.tokenizer.decode(ids[0, inputs["input_ids"].size(1) :], skip_special_tokens=True)

    def locate_frames(self, frames: np.ndarray) -> list[LocateResult]:
        """Point on frames uint8 [N, H, W, 3]; one result per frame."""
        frames = as_frames(frames, "N")
        h, w = frames.shape[1:3]
        merge_px = self.cfg.merge_frac * math.hypot(h, w)
        results = []
        for text in self.answer_texts(frames):
            uv, reason = choose_point(parse_points(text, w, h), merge_px)
            if uv is None:
                results.append(LocateResult.not_found(NAME, reason))
            else:
                conf = self.cfg.confidence * (0.8 if reason else 1.0)
                results.append(LocateResult(uv, conf, NAME, reason))
        return results

    def provenance(self) -> dict[str, Any]:
        """What produced the points: the model, its family, the prompt (for the output's provenance)."""
        return {"model": self.cfg.model, "family": self.family, "prompt": self.prompt}


LOCATORS.register(NAME, PointerLocator)
