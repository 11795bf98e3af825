"""Goldens for armdata's molmoact preset, computed by MolmoAct's, AiT's and Depth-Anything-V2's released code.

Not part of the test suite and never imported by it: run by hand, outside the repository, in a throwaway venv that
has torch, torchvision's transforms, transformers, OpenCV and PIL, with REF_DIR holding unpacked copies of
allenai/molmoact (``preprocess/``), SwinTransformer/AiT (``AiT/vae/``) and DepthAnything/Depth-Anything-V2
(``DA2/depth_anything_v2/``):

    REF_DIR=... python make_goldens.py OUT_DIR

The weight recipes and inputs repeat tests/depth_factory.py's (same seeds, same values).
"""
import json
import math
import os
import sys
import types
from functools import partial

import cv2
import numpy as np
import torch

REF = os.environ["REF_DIR"]
sys.path[:0] = [f"{REF}/preprocess", f"{REF}/AiT/vae", f"{REF}/DA2"]
# processors.py imports line_utils, which loads Molmo-7B at import: stand in an empty module (points unused here)
sys.modules["line_utils"] = types.SimpleNamespace(point_at_gripper=None)
# DepthTokens calls .cuda(); this machine has no GPU: make .cuda() the identity (DataParallel with no GPU runs
# the module itself)
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self

import processors  # noqa: E402  MolmoAct's preprocess/processors.py
from depth_anything_v2.dpt import DepthAnythingV2, DPTHead  # noqa: E402
from depth_anything_v2.dinov2 import DinoVisionTransformer  # noqa: E402
from depth_anything_v2.dinov2_layers import MemEffAttention, NestedTensorBlock as Block  # noqa: E402

OUT = sys.argv[1]
torch.set_num_threads(2)


# ---------------------------------------------------------------- shared deterministic inputs (same in the test)
def depth_like_maps():
    """Four uint8 depth-like maps of different sizes (ramps, discs, waves, seeded noise)."""
    out = []
    for i, (h, w) in enumerate([(240, 320), (256, 256), (480, 640), (97, 131)]):
        yy, xx = np.mgrid[:h, :w].astype(np.float64)
        rng = np.random.default_rng(100 + i)
        f = 120 + 90 * np.sin(xx / (7 + 5 * i)) * np.cos(yy / (11 + 3 * i)) + 40 * (yy / h)
        f += np.where((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 4) ** 2, 50, 0)
        f += rng.normal(0, 6, size=(h, w))
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def rgb_images():
    """Three uint8 RGB images (H, W, 3): a square one and two that are not."""
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


def ait_state_dict(keys_shapes, seed=0):
    """Same recipe as armdata's tests/depth_factory.py: seeded, scaled by 1/sqrt(fan-in), unit-norm codebook."""
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
            transposed = key.startswith("decoder.") and len(shape) == 4 and shape[2] == 4
            fan_in = shape[0] * shape[2] * shape[3] / 4 if transposed else math.prod(shape[1:])
            arr = rng.standard_normal(shape) / math.sqrt(fan_in)
        sd[key] = torch.from_numpy(arr.astype(np.float32))
    return sd


def da2_state_dict(keys_shapes, seed=0):
    """Seeded weights for the tiny original Depth-Anything-V2 (same recipe in the test)."""
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


TINY = dict(embed_dim=64, depth=4, num_heads=1, features=16, out_channels=[8, 16, 32, 32])


def tiny_original_da2():
    """The original Depth-Anything-V2 classes at a tiny size (the released classes only know vits/b/l/g)."""
    m = DepthAnythingV2(encoder="vits", features=TINY["features"], out_channels=TINY["out_channels"])
    m.pretrained = DinoVisionTransformer(
        img_size=518, patch_size=14, embed_dim=TINY["embed_dim"], depth=TINY["depth"], num_heads=TINY["num_heads"],
        mlp_ratio=4, block_fn=partial(Block, attn_class=MemEffAttention), init_values=1.0, ffn_layer="mlp",
        block_chunks=0, num_register_tokens=0, interpolate_antialias=False, interpolate_offset=0.1,
    )
    m.depth_head = DPTHead(TINY["embed_dim"], TINY["features"], False, out_channels=TINY["out_channels"])
    m.intermediate_layer_idx["vits"] = [0, 1, 2, 3]
    return m.eval()


# ---------------------------------------------------------------- 1. depth codes (MolmoAct DepthTokens + AiT VQVAE)
probe = processors.VQVAE(image_size=320, num_resnet_blocks=2, downsample_ratio=32, num_tokens=128, codebook_dim=512,
                         hidden_dim=16, use_norm=False, channels=1, train_objective="regression", max_value=10.,
                         residul_type="v1", loss_type="mse")
ait_keys = [(k, list(v.shape)) for k, v in probe.state_dict().items()]
sd = ait_state_dict(ait_keys, seed=0)
torch.save({"weights": {f"module.{k}": v for k, v in sd.items()}}, f"{OUT}/vae.pt")
tok = processors.DepthTokens(model_path=f"{OUT}/vae.pt")
codes = []
for m in depth_like_maps():
    s = tok.inference_depth_tokens(m)
    codes.append([int(x) for x in s.replace("<DEPTH_START>", "").replace("<DEPTH_END>", "")
                  .replace("<DEPTH_", " ").replace(">", " ").split()])
json.dump({"ait_keys": ait_keys, "codes": codes}, open(f"{OUT}/depth_codes.json", "w"))
print("codes", [len(set(c)) for c in codes])

# ---------------------------------------------------------------- 2. depth maps (original infer_image + MolmoAct)
da = tiny_original_da2()
da_keys = [(k, list(v.shape)) for k, v in da.state_dict().items()]
da.load_state_dict(da2_state_dict(da_keys, seed=0))
depth_proc = processors.Depth.__new__(processors.Depth)
depth_proc.model, depth_proc.device = da, "cpu"
maps, chain_codes, raw = [], [], []
for rgb in rgb_images():
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    with torch.no_grad():
        raw.append(da.infer_image(bgr, 518))
        d3 = depth_proc.inference_depth_from_rgb(bgr)
    gray = cv2.cvtColor(d3, cv2.COLOR_BGR2GRAY)
    maps.append(gray)
    s = tok.inference_depth_tokens(gray)
    chain_codes.append([int(x) for x in s.replace("<DEPTH_START>", "").replace("<DEPTH_END>", "")
                        .replace("<DEPTH_", " ").replace(">", " ").split()])
    print("map", gray.shape, gray.min(), gray.max(), len(np.unique(gray)))
np.savez_compressed(f"{OUT}/depth_maps.npz", **{f"map{i}": m for i, m in enumerate(maps)},
                    **{f"raw{i}": r for i, r in enumerate(raw)})
json.dump({"da2_tiny_keys": da_keys, "tiny": TINY, "chain_codes": chain_codes}, open(f"{OUT}/depth_maps.json", "w"))
torch.save(da.state_dict(), f"{OUT}/depth_anything_v2_tiny.pth")
