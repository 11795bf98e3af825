"""Randomly initialised Depth Anything V2 models of the real architecture, saved like a released one.

For tests, benchmarks and offline runs where no weights can be downloaded: the files are what
``save_pretrained`` writes (config, safetensors weights, image processor config), so they load through exactly the
path users take (``AutoModelForDepthEstimation.from_pretrained(dir)``). Their depth is meaningless.

``small`` is the V2-Small architecture (24.8M parameters); ``tiny`` is the same design, narrow and shallow (~120k).
"""

from __future__ import annotations

import os

ARCHS: dict[str, dict] = {
    "small": dict(hidden=384, layers=12, heads=6, neck=[48, 96, 192, 384], fusion=64, head=32),
    "tiny": dict(hidden=32, layers=4, heads=2, neck=[8, 16, 32, 32], fusion=16, head=8),
}


def save_random_depth_anything(out_dir: str | os.PathLike, arch: str = "tiny", seed: int = 0) -> str:
    """Write a random Depth Anything V2 model (``tiny`` | ``small``) and its image processor to ``out_dir``."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    a = ARCHS[arch]
    n = a["layers"]
    backbone = Dinov2Config(
        hidden_size=a["hidden"], num_hidden_layers=n, num_attention_heads=a["heads"], mlp_ratio=4, patch_size=14,
        image_size=518, layerscale_value=1.0, apply_layernorm=True, reshape_hidden_states=False,
        out_indices=[n // 4, n // 2, 3 * n // 4, n] if n >= 4 else list(range(1, n + 1)),
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=a["hidden"], patch_size=14,
        reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=a["neck"], fusion_hidden_size=a["fusion"],
        head_hidden_size=a["head"], head_in_index=-1, depth_estimation_type="relative",
    )
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    from armdata.annotators.depth.original_checkpoint import released_processor

    processor = released_processor()  # keep aspect, shorter side to 518, multiple of 14, bicubic
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return str(out_dir)
