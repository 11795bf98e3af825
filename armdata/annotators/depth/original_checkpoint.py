"""Original Depth-Anything-V2 checkpoints (``depth_anything_v2_vit{s,b,l}.pth``) loaded into the transformers model.

MolmoAct's preprocessing loads these files into the original ``DepthAnythingV2`` class. armdata runs the same
weights in ``transformers.DepthAnythingForDepthEstimation``: this module renames the original state dict's keys to
the transformers layout (the correspondence follows transformers' conversion script for Depth Anything V2, written
out here from its facts) and infers the architecture from the tensors' shapes, so a ``.pth`` file and the ``-hf``
model directory of the same release load into the same network.

Key correspondence (original -> transformers), ``i`` a block, ``k`` a reassemble/neck index, ``r`` a refinenet:

    pretrained.cls_token / mask_token / pos_embed      backbone.embeddings.cls_token / mask_token / position_embeddings
    pretrained.patch_embed.proj                        backbone.embeddings.patch_embeddings.projection
    pretrained.blocks.i.norm1, norm2, mlp.fc1, mlp.fc2 backbone.encoder.layer.i.(same names)
    pretrained.blocks.i.attn.qkv                       ...attention.q_proj, k_proj, v_proj (rows split in thirds)
    pretrained.blocks.i.attn.proj                      ...attention.o_proj
    pretrained.blocks.i.ls1.gamma, ls2.gamma           ...layer_scale1.lambda1, layer_scale2.lambda1
    pretrained.norm                                    backbone.layernorm
    depth_head.projects.k, resize_layers.k             neck.reassemble_stage.layers.k.projection, .resize (k != 2)
    depth_head.scratch.layer{k+1}_rn                   neck.convs.k
    depth_head.scratch.refinenet{r}.out_conv           neck.fusion_stage.layers.{4-r}.projection
    depth_head.scratch.refinenet{r}.resConfUnit{j}.conv{m}  neck.fusion_stage.layers.{4-r}.residual_layer{j}.convolution{m}
    depth_head.scratch.output_conv1, output_conv2.0, output_conv2.2   head.conv1, head.conv2, head.conv3

Architecture: hidden size from ``pos_embed``, depth from the block count, 64-dimensional heads (true of ViT-S/B/L),
the four layers the original reads (``intermediate_layer_idx``: 2,5,8,11 for 12 blocks; 4,11,17,23 for 24; as
transformers' 1-based ``out_indices``), neck and head widths from their convolutions.
"""

from __future__ import annotations

import os
import re

import torch

from armdata.schemas.errors import ArmdataError

# Licences of the released original files (the same as their -hf directories).
ORIGINAL_LICENCES = {"vits": "Apache-2.0", "vitb": "CC-BY-NC-4.0", "vitl": "CC-BY-NC-4.0"}
HEAD_DIM = 64
# The original's intermediate_layer_idx (0-based) per depth, as transformers' 1-based out_indices.
_OUT_INDICES = {12: [3, 6, 9, 12], 24: [5, 12, 18, 24]}

_BLOCK = re.compile(r"^pretrained\.blocks\.(\d+)\.(.+)$")
_REFINE = re.compile(r"^depth_head\.scratch\.refinenet(\d)\.(.+)$")
_BLOCK_RENAMES = {"attn.proj": "attention.o_proj", "ls1.gamma": "layer_scale1.lambda1",
                  "ls2.gamma": "layer_scale2.lambda1"}
_FIXED = {
    "pretrained.cls_token": "backbone.embeddings.cls_token",
    "pretrained.mask_token": "backbone.embeddings.mask_token",
    "pretrained.pos_embed": "backbone.embeddings.position_embeddings",
    "pretrained.patch_embed.proj": "backbone.embeddings.patch_embeddings.projection",
    "pretrained.norm": "backbone.layernorm",
    "depth_head.scratch.output_conv1": "head.conv1",
    "depth_head.scratch.output_conv2.0": "head.conv2",
    "depth_head.scratch.output_conv2.2": "head.conv3",
}


def original_licence(path: str) -> str:
    """The licence of a released original checkpoint, by its file name (``unknown`` for other files)."""
    name = os.path.basename(path)
    return next((lic for enc, lic in ORIGINAL_LICENCES.items() if f"_{enc}" in name), "unknown")


def _rename(key: str) -> str | None:
    """One original key -> its transformers key (None: a fused qkv tensor, split by the caller)."""
    stem, _, leaf = key.rpartition(".")
    if stem in _FIXED:
        return f"{_FIXED[stem]}.{leaf}"
    if key in _FIXED:
        return _FIXED[key]
    m = _BLOCK.match(key)
    if m:
        i, rest = m.groups()
        if rest.startswith("attn.qkv."):
            return None
        for old, new in _BLOCK_RENAMES.items():
            if rest.startswith(old):
                rest = new + rest[len(old):]
        return f"backbone.encoder.layer.{i}.{rest}"
    m = re.match(r"^depth_head\.(projects|resize_layers)\.(\d)\.(.+)$", key)
    if m:
        kind, k, leaf = m.groups()
        return f"neck.reassemble_stage.layers.{k}.{'projection' if kind == 'projects' else 'resize'}.{leaf}"
    m = re.match(r"^depth_head\.scratch\.layer(\d)_rn\.(.+)$", key)
    if m:
        return f"neck.convs.{int(m.group(1)) - 1}.{m.group(2)}"
    m = _REFINE.match(key)
    if m:
        r, rest = int(m.group(1)), m.group(2)
        rest = re.sub(r"^out_conv", "projection", rest)
        rest = re.sub(r"^resConfUnit(\d)\.conv(\d)", r"residual_layer\1.convolution\2", rest)
        return f"neck.fusion_stage.layers.{4 - r}.{rest}"
    raise ArmdataError(f"unexpected key {key!r} in an original Depth-Anything-V2 checkpoint")


def convert_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original state dict -> transformers state dict (qkv split into q, k, v in that order)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new = _rename(key)
        if new is not None:
            out[new] = value
            continue
        i, leaf = _BLOCK.match(key).group(1), key.rsplit(".", 1)[1]
        for name, part in zip(("q_proj", "k_proj", "v_proj"), torch.chunk(value, 3, dim=0)):
            out[f"backbone.encoder.layer.{i}.attention.{name}.{leaf}"] = part.clone()
    return out


def config_from_state_dict(sd: dict[str, torch.Tensor]):
    """The ``DepthAnythingConfig`` an original state dict was made with, from its tensors' shapes."""
    from transformers import DepthAnythingConfig, Dinov2Config

    try:
        hidden = int(sd["pretrained.pos_embed"].shape[-1])
        n_pos = int(sd["pretrained.pos_embed"].shape[1]) - 1
        depth = 1 + max(int(m.group(1)) for m in map(_BLOCK.match, sd) if m)
        mlp = int(sd["pretrained.blocks.0.mlp.fc1.weight"].shape[0])
        neck = [int(sd[f"depth_head.projects.{k}.weight"].shape[0]) for k in range(4)]
        fusion = int(sd["depth_head.scratch.layer1_rn.weight"].shape[0])
        head = int(sd["depth_head.scratch.output_conv2.0.weight"].shape[0])
    except (KeyError, ValueError) as e:
        raise ArmdataError(f"not an original Depth-Anything-V2 state dict (no {e})") from None
    patch = int(sd["pretrained.patch_embed.proj.weight"].shape[-1])
    backbone = Dinov2Config(
        hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=max(1, hidden // HEAD_DIM),
        mlp_ratio=mlp // hidden, patch_size=patch, image_size=int(round(n_pos ** 0.5)) * patch, layerscale_value=1.0,
        apply_layernorm=True, reshape_hidden_states=False,
        out_indices=_OUT_INDICES.get(depth, [depth // 4, depth // 2, 3 * depth // 4, depth]),
    )
    return DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=hidden, patch_size=patch, reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=neck, fusion_hidden_size=fusion, head_hidden_size=head, head_in_index=-1,
        depth_estimation_type="relative",
    )


def load_original_checkpoint(path: str | os.PathLike):
    """``depth_anything_v2_vit*.pth`` -> ``DepthAnythingForDepthEstimation`` with its weights (eval mode).

    Every key must find its place and every parameter must be filled: otherwise an error lists what differs.
    """
    from transformers import DepthAnythingForDepthEstimation

    path = str(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors of many kinds: name the file and why
        raise ArmdataError(f"{path}: cannot be read as a weights-only torch checkpoint: {e}") from e
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    model = DepthAnythingForDepthEstimation(config_from_state_dict(sd))
    res = model.load_state_dict(convert_state_dict(sd), strict=False)
    if res.missing_keys or res.unexpected_keys:
        raise ArmdataError(f"{path}: original Depth-Anything-V2 checkpoint does not fill the model: missing "
                           f"{res.missing_keys[:8]}, unexpected {res.unexpected_keys[:8]}")
    return model.eval()


def released_processor():
    """The image processor the released ``-hf`` directories ship (for the ``armdata`` preprocessing of a .pth)."""
    from transformers import DPTImageProcessor

    return DPTImageProcessor(
        do_resize=True, size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
        resample=3, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_pad=False,
    )


def use_original_position_interpolation(model) -> None:
    """Make the transformers model interpolate its position embeddings as the original DINOv2 code of
    Depth-Anything-V2 does, so that non-square inputs give the original's output too.

    transformers resizes the 37x37 grid of position embeddings to the exact patch grid (``size=``); the original
    passes ``scale_factor = (patches + 0.1) / 37`` per side (its ``interpolate_offset``), which moves the bicubic
    sampling positions slightly. Square 518x518 inputs use the grid as it is in both. The embeddings module is
    replaced by one of a subclass that only overrides that interpolation (its weights are carried over).
    """
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

    class OriginalInterpolationEmbeddings(Dinov2Embeddings):
        original_interpolation = True

        def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
            n_patch, n_pos = embeddings.shape[1] - 1, self.position_embeddings.shape[1] - 1
            if n_patch == n_pos and height == width:
                return self.position_embeddings
            pos = self.position_embeddings.float()
            side, dim = int(round(n_pos ** 0.5)), pos.shape[-1]
            scale = ((height // self.patch_size + 0.1) / side, (width // self.patch_size + 0.1) / side)
            grid = torch.nn.functional.interpolate(
                pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2), scale_factor=scale, mode="bicubic",
                antialias=False,
            )
            grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
            return torch.cat((pos[:, :1], grid), dim=1).to(embeddings.dtype)

    old = model.backbone.embeddings
    if getattr(old, "original_interpolation", False):
        return
    new = OriginalInterpolationEmbeddings(old.config)
    new.load_state_dict(old.state_dict())
    model.backbone.embeddings = new.to(old.position_embeddings.device, old.position_embeddings.dtype).eval()
