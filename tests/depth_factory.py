"""Depth models for tests: seeded checkpoints of the real layouts, written to disk and loaded through the real paths.

- :func:`ait_state_dict` / :func:`save_ait_pt`: MolmoAct's ``vae-final.pt`` layout (AiT VQ-VAE, ``{"weights": ...}``
  with DDP's ``module.`` prefix), weights from the committed key manifest and a seeded recipe.
- :func:`save_tiny_depth_tokenizer`: a tiny AiT-layout VQ-VAE (same design, narrow) as armdata's safetensors with
  its config, for tests that run a build or annotate job on real or factory sources (they must name a tokenizer).
- :func:`original_da2_state_dict`: a tiny Depth-Anything-V2 in the *original* key layout.

The recipes are the ones tests/annotators/golden/make_goldens.py used to compute the goldens with MolmoAct's,
AiT's and Depth-Anything-V2's own code, so the same seeds give the same weights there and here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def ait_state_dict(keys_shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded weights scaled by 1/sqrt(fan-in); codebook rows of unit norm (so many codes get used)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in keys_shapes:
        if key.endswith("_ema_cluster_size"):
            arr = np.ones(shape)
        elif key.startswith("_vq_vae."):
            arr = rng.standard_normal(shape)
            arr /= np.linalg.norm(arr, axis=1, keepdims=True)
        elif key.endswith(".bias"):
            arr = rng.standard_normal(shape) * 0.01
        else:
            # a stride-2 transposed conv sees in_channels * k * k / 4 inputs per output pixel
            transposed = key.startswith("decoder.") and len(shape) == 4 and shape[2] == 4
            fan_in = shape[0] * shape[2] * shape[3] / 4 if transposed else math.prod(shape[1:])
            arr = rng.standard_normal(shape) / math.sqrt(fan_in)
        sd[key] = torch.from_numpy(arr.astype(np.float32))
    return sd


def save_ait_pt(path: str | Path, seed: int = 0) -> str:
    """A file shaped like MolmoAct's vae-final.pt: {"weights": state_dict} with DDP's module. prefix."""
    from armdata.annotators.depth.tokenizer import load_manifest

    sd = ait_state_dict(load_manifest().items(), seed)
    torch.save({"weights": {f"module.{k}": v for k, v in sd.items()}}, path)
    return str(path)


def save_tiny_depth_tokenizer(path: str | Path, seed: int = 0) -> str:
    """A tiny AiT-layout VQ-VAE (hidden 4, code 16, one residual block; still 320 -> 10x10 codes of 128) saved as
    armdata's safetensors with its config in the metadata: what `--depth-tokenizer` takes in tests."""
    from armdata.annotators.depth.tokenizer import AiTVQVAE, VQVAEConfig, expected_state_shapes, save_checkpoint

    cfg = VQVAEConfig(hidden_dim=4, codebook_dim=16, num_resnet_blocks=1)
    model = AiTVQVAE(cfg)
    model.load_state_dict(ait_state_dict(expected_state_shapes(cfg).items(), seed))
    save_checkpoint(model, path)
    return str(path)


def original_da2_state_dict(keys_shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded weights for a Depth-Anything-V2 in the original layout (keys and shapes as its classes make them)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in keys_shapes:
        if key == "depth_head.scratch.output_conv2.2.bias":
            arr = np.full(shape, 1.0)  # keeps the final ReLU's input positive: a depth map, not zeros
        elif key.endswith("gamma"):
            arr = 0.5 + 0.1 * rng.standard_normal(shape)
        elif ("norm" in key and key.endswith(".weight")) and len(shape) == 1:
            arr = 1.0 + 0.1 * rng.standard_normal(shape)
        elif key.endswith(".bias") or len(shape) == 1:
            arr = 0.02 * rng.standard_normal(shape)
        elif key in ("pretrained.pos_embed", "pretrained.cls_token", "pretrained.mask_token"):
            arr = 0.5 * rng.standard_normal(shape)
        else:
            transposed = ".resize_layers." in key and key.split(".")[2] in ("0", "1")
            fan_in = shape[0] if transposed else math.prod(shape[1:])  # stride == kernel: one input per tap
            arr = rng.standard_normal(shape) / math.sqrt(fan_in)
        sd[key] = torch.from_numpy(arr.astype(np.float32))
    return sd


def depth_like_maps() -> list[np.ndarray]:
    """Four uint8 depth-like maps of different sizes (waves, a disc, a ramp, seeded noise)."""
    out = []
    for i, (h, w) in enumerate([(240, 320), (256, 256), (480, 640), (97, 131)]):
        yy, xx = np.mgrid[:h, :w].astype(np.float64)
        rng = np.random.default_rng(100 + i)
        f = 120 + 90 * np.sin(xx / (7 + 5 * i)) * np.cos(yy / (11 + 3 * i)) + 40 * (yy / h)
        f += np.where((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 4) ** 2, 50, 0)
        f += rng.normal(0, 6, size=(h, w))
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def rgb_images() -> list[np.ndarray]:
    """Three uint8 RGB images: one square, two not (landscape and portrait)."""
    out = []
    for i, (h, w) in enumerate([(56, 56), (60, 80), (90, 64)]):
        yy, xx = np.mgrid[:h, :w].astype(np.float64)
        rng = np.random.default_rng(200 + i)
        r = 128 + 100 * np.sin(xx / (5 + i))
        g = 128 + 100 * np.cos(yy / (4 + i))
        b = np.where((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2, 230.0, 20.0)
        img = np.stack([r, g, b], -1) + rng.normal(0, 8, size=(h, w, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out
