"""The depth VQ-VAE: 320x320 uint8 depth maps <-> 100 codes in [0, 128), in the AiT checkpoint layout.

MolmoAct's depth tokens come from the VQ-VAE of AiT ("All in Tokens", SwinTransformer/AiT, ``vae/models/VQVAE.py``)
as configured by the AURORA perception-token work (``AiT/vae/configs/depth/ait_depth_vqvae.py``): image 320,
1 channel, hidden 16, downsample 32, 2 residual blocks, a 1x1 conv to a 512-dim code, codebook 128, EMA quantizer
(decay 0.99, commitment 0.25), ``use_norm=False``, MSE. Its ``vae-final.pt`` is ``{"weights": state_dict}``; the
state dict may carry DDP's ``module.`` prefix. This module re-implements that network so that such a checkpoint
loads key for key (the facts were read from the public sources; no code was copied).

Layout (state-dict keys; ``d`` = hidden_dim, ``L`` = log2(downsample) - 1 = 4, ``C`` = d * 2**L = 256):

    encoder.0            Conv2d(1 -> d, 4, stride 2, pad 1)           then ReLU (encoder.1)
    encoder.2,4,6,8      Conv2d(c -> 2c, 4, stride 2, pad 1)          each then ReLU      (5 stride-2 stages: 320 -> 10)
    encoder.10,11        ResBlock(C): net.0 conv3x3, ReLU, net.2 conv3x3, ReLU, net.4 conv1x1; plus the input
    encoder.12           Conv2d(C -> 512, 1)                          the code
    decoder.0            Conv2d(512 -> C, 1)                          then ReLU (decoder.1)
    decoder.2,3          ResBlock(C)
    decoder.4            ConvTranspose2d(C -> C, 4, stride 2, pad 1)  then ReLU
    decoder.6,8,10,12    ConvTranspose2d(c -> c/2, 4, stride 2, pad 1) each then ReLU
    decoder.14           Conv2d(d -> 1, 1)
    _vq_vae._embedding          [128, 512] codebook (a buffer: EMA-updated, not a parameter)
    _vq_vae._ema_cluster_size   [128]
    _vq_vae._ema_w              [128, 512]

Input scaling, two conventions (``input_scaling``):

- ``"unit"``, what MolmoAct's released preprocessing feeds ``vae-final.pt`` (``preprocess/processors.py``,
  ``DepthTokens``): ``transforms.Resize((320, 320))`` on a PIL image, then ``ToTensor()``, no Normalize, so with
  ``use_norm=False`` the network sees ``x = u8 / 255`` in [0, 1]. The molmoact preset uses it for AiT ``.pt``
  checkpoints.
- ``"signed"``, what AURORA trained the VQ-VAE on (its dataset applies ``ToTensor()`` then ``Normalize(0.5, 0.5)``):
  ``x = u8 / 127.5 - 1`` in [-1, 1]. armdata's own trainer uses it, and a checkpoint it wrote records it.

A checkpoint that records its scaling is always fed that way; otherwise the caller's choice applies. ``decode`` maps
the decoder's output back in the same units (clipped to [0, 255]). Codes are the 10x10 grid of nearest-codebook
indices flattened row by row (raster order), 0-based, as AURORA's ``get_codes.py`` and MolmoAct's ``DepthTokens``
write them.

The expected keys and shapes of the MolmoAct layout are committed as data in ``tokenizer_manifest.json``;
:func:`expected_state_shapes` regenerates them from the model for any config (a test keeps the two equal).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from armdata.schemas.errors import ArmdataError

logger = logging.getLogger(__name__)

MANIFEST_PATH = Path(__file__).with_name("tokenizer_manifest.json")
DEPTH_START = "<DEPTH_START>"
DEPTH_END = "<DEPTH_END>"
_DEPTH_TOKEN_RE = re.compile(r"<DEPTH_(\d+)>")
# Keys that wrap a state dict in saved checkpoints: AiT saves {"weights": sd}; others use "model"/"state_dict".
_WRAPPER_KEYS = ("weights", "model", "state_dict", "module")
_CONFIG_METADATA_KEY = "armdata_vqvae_config"
_SCALING_METADATA_KEY = "armdata_input_scaling"
INPUT_SCALINGS = ("unit", "signed")  # u8 / 255 (MolmoAct's preprocessing) | u8 / 127.5 - 1 (AURORA's training)


class CheckpointError(ArmdataError):
    """A checkpoint does not match the expected layout; names the file and every key that differs."""

    def __init__(self, path: str, missing: list[str], unexpected: list[str], misshaped: list[str], note: str = ""):
        self.path = str(path)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.misshaped = list(misshaped)
        parts = [f"{self.path}: not a depth VQ-VAE checkpoint of the expected layout{note}"]
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.misshaped:
            parts.append(f"mis-shaped keys ({len(self.misshaped)}): {', '.join(self.misshaped)}")
        super().__init__("\n  ".join(parts))


@dataclass(frozen=True)
class VQVAEConfig:
    """Architecture of the AiT depth VQ-VAE. Defaults are MolmoAct's / AURORA's tokenizer."""

    image_size: int = 320  # MolmoAct resizes every depth map to 320x320 before coding
    channels: int = 1  # one depth channel
    hidden_dim: int = 16  # width of the first stage; doubles at each of the next stages
    downsample_ratio: int = 32  # 5 stride-2 stages: 320 / 32 = 10 -> a 10x10 grid = 100 tokens
    num_resnet_blocks: int = 2  # residual blocks at the bottleneck, in encoder and decoder
    codebook_dim: int = 512  # the 1x1 conv's output, the dimension of each code vector
    num_tokens: int = 128  # codebook size: <DEPTH_0> .. <DEPTH_127>
    ema_decay: float = 0.99  # EMA codebook update (AiT's VectorQuantizerEMA)
    commitment_cost: float = 0.25  # weight of ||z_e - sg(e)||^2
    epsilon: float = 1e-5  # Laplace smoothing of the EMA cluster sizes

    def __post_init__(self) -> None:
        r = self.downsample_ratio
        if r < 2 or r & (r - 1):
            raise ValueError(f"downsample_ratio must be a power of two >= 2, got {r}")
        if self.image_size % r:
            raise ValueError(f"image_size {self.image_size} is not a multiple of downsample_ratio {r}")

    @property
    def n_stages(self) -> int:
        """Stride-2 stages (the first conv plus log2(r) - 1 doubling convs)."""
        return int(math.log2(self.downsample_ratio))

    @property
    def grid(self) -> int:
        """Side of the code grid (10 for MolmoAct)."""
        return self.image_size // self.downsample_ratio

    @property
    def num_codes(self) -> int:
        """Codes per map (100 for MolmoAct)."""
        return self.grid * self.grid

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "VQVAEConfig":
        return cls(**json.loads(text))


MOLMOACT_VQVAE = VQVAEConfig()


class _ResBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3 - ReLU - conv1x1, plus the input (keys net.0, net.2, net.4 as in AiT's v1 block)."""

    def __init__(self, chan: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(chan, chan, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(chan, chan, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(chan, chan, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class EMAQuantizer(nn.Module):
    """Nearest-codebook quantizer whose codebook follows an exponential moving average of its assignments.

    Buffers (not parameters) ``_embedding``, ``_ema_cluster_size``, ``_ema_w``, as AiT names them. In training mode
    each forward updates them: N <- decay N + (1-decay) counts, Laplace-smoothed; W <- decay W + (1-decay) sum(z);
    codebook = W / N. The loss is ``commitment * ||z_e - sg(q)||^2``; gradients pass straight through.
    """

    def __init__(self, num_tokens: int, dim: int, decay: float, commitment: float, epsilon: float):
        super().__init__()
        self.num_tokens = num_tokens
        self.dim = dim
        self.decay = decay
        self.commitment = commitment
        self.epsilon = epsilon
        self.register_buffer("_embedding", torch.randn(num_tokens, dim))
        self.register_buffer("_ema_cluster_size", torch.zeros(num_tokens))
        self.register_buffer("_ema_w", torch.randn(num_tokens, dim))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code vector for each row of ``flat`` [M, dim]."""
        emb = self._embedding
        d = flat.pow(2).sum(1, keepdim=True) + emb.pow(2).sum(1) - 2.0 * flat @ emb.t()
        return d.argmin(1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """codes [N, g, g] -> code vectors [N, dim, g, g]."""
        return F.embedding(idx, self._embedding).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [N, dim, g, g] -> (quantized with straight-through gradient, codes [N, g, g], commitment loss)."""
        n, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        idx = self.nearest(flat.detach())
        q = self._embedding[idx]
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(idx, self.num_tokens).to(flat.dtype)
                counts = onehot.sum(0)
                size = self._ema_cluster_size * self.decay + (1 - self.decay) * counts
                total = size.sum()
                size = (size + self.epsilon) / (total + self.num_tokens * self.epsilon) * total
                self._ema_cluster_size.copy_(size)
                self._ema_w.mul_(self.decay).add_((1 - self.decay) * (onehot.t() @ flat.detach()))
                self._embedding.copy_(self._ema_w / self._ema_cluster_size.unsqueeze(1))
        loss = self.commitment * F.mse_loss(flat, q.detach())
        q = flat + (q - flat).detach()
        return q.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous(), idx.reshape(n, h, w), loss


class AiTVQVAE(nn.Module):
    """The AiT depth VQ-VAE network; state-dict keys match AiT's ``VQVAE`` (see the module docstring)."""

    def __init__(self, config: VQVAEConfig = MOLMOACT_VQVAE):
        super().__init__()
        self.config = config
        d = config.hidden_dim
        enc: list[nn.Module] = [nn.Conv2d(config.channels, d, 4, stride=2, padding=1), nn.ReLU()]
        for _ in range(config.n_stages - 1):
            enc += [nn.Conv2d(d, 2 * d, 4, stride=2, padding=1), nn.ReLU()]
            d *= 2
        enc += [_ResBlock(d) for _ in range(config.num_resnet_blocks)]
        enc.append(nn.Conv2d(d, config.codebook_dim, 1))
        dec: list[nn.Module] = [nn.Conv2d(config.codebook_dim, d, 1), nn.ReLU()]
        dec += [_ResBlock(d) for _ in range(config.num_resnet_blocks)]
        dec += [nn.ConvTranspose2d(d, d, 4, stride=2, padding=1), nn.ReLU()]
        for _ in range(config.n_stages - 1):
            dec += [nn.ConvTranspose2d(d, d // 2, 4, stride=2, padding=1), nn.ReLU()]
            d //= 2
        dec.append(nn.Conv2d(d, config.channels, 1))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self._vq_vae = EMAQuantizer(
            config.num_tokens, config.codebook_dim, config.ema_decay, config.commitment_cost, config.epsilon
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [N, 1, S, S] in [-1, 1] -> reconstruction, codes, losses (recon MSE + commitment)."""
        z = self.encoder(x)
        q, codes, commit = self._vq_vae(z)
        recon = self.decoder(q)
        recon_mse = F.mse_loss(recon, x)
        return {"recon": recon, "codes": codes, "z": z, "recon_mse": recon_mse, "commit": commit,
                "loss": recon_mse + commit}


def expected_state_shapes(config: VQVAEConfig = MOLMOACT_VQVAE) -> dict[str, list[int]]:
    """State-dict key -> shape of a model of this config (generated from the model itself)."""
    with torch.device("meta"):
        model = AiTVQVAE(config)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def load_manifest() -> dict[str, list[int]]:
    """The committed manifest of MolmoAct's ``vae-final.pt`` layout: key -> shape."""
    with open(MANIFEST_PATH, encoding="utf-8") as f:
        return {k: list(v) for k, v in json.load(f)["keys"].items()}


def write_manifest(path: str | os.PathLike = MANIFEST_PATH) -> None:
    """Regenerate the committed manifest from the model (``python -m armdata.annotators.depth.tokenizer``)."""
    body = {
        "what": "state-dict keys and shapes of the AiT depth VQ-VAE that MolmoAct's vae-final.pt was trained with",
        "config": dataclasses.asdict(MOLMOACT_VQVAE),
        "keys": expected_state_shapes(MOLMOACT_VQVAE),
    }
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(body, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _unwrap(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """Peel ``{"weights": ...}``, ``{"model": ...}``, ``{"state_dict": ...}`` wrappers and DDP's ``module.``."""
    for _ in range(4):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                raise CheckpointError(path, [], sorted(map(str, obj)), [], note=" (no state dict found in it)")
            obj = inner
        else:
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, [], [], [], note=f" (holds a {type(obj).__name__}, not a state dict)")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _is_safetensors(path: str) -> bool:
    """By content, not name: a safetensors file starts with an 8-byte header length and a JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith(b"PK")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], VQVAEConfig | None]:
    """Read a state dict (.safetensors, or .pt/.pth/.bin with ``weights_only=True``) and a config if one is stored."""
    sd, cfg, _ = read_checkpoint_meta(path)
    return sd, cfg


def read_checkpoint_meta(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], VQVAEConfig | None, str | None]:
    """As :func:`read_checkpoint`, plus the input scaling the file records (armdata's safetensors: ``signed``
    unless its metadata says otherwise, as armdata's trainer feeds it; AiT ``.pt`` files record none)."""
    path = str(path)
    if not os.path.exists(path):
        raise ArmdataError(f"{path}: no such depth tokenizer checkpoint")
    if _is_safetensors(path):
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        sd = load_file(path)
        cfg = VQVAEConfig.from_json(meta[_CONFIG_METADATA_KEY]) if _CONFIG_METADATA_KEY in meta else None
        scaling = meta.get(_SCALING_METADATA_KEY) or ("signed" if _CONFIG_METADATA_KEY in meta else None)
        return _unwrap(sd, path), cfg, scaling
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors of many kinds: name the file and why
        raise ArmdataError(f"{path}: cannot be read as a weights-only torch checkpoint: {e}") from e
    return _unwrap(obj, path), None, None


def check_state_dict(sd: Mapping[str, torch.Tensor], expected: Mapping[str, Sequence[int]], path: str) -> None:
    """Raise :class:`CheckpointError` listing every missing, unexpected and mis-shaped key."""
    missing = sorted(k for k in expected if k not in sd)
    unexpected = sorted(k for k in sd if k not in expected)
    misshaped = sorted(
        f"{k} {list(sd[k].shape)} != {list(expected[k])}"
        for k in expected
        if k in sd and list(sd[k].shape) != list(expected[k])
    )
    if missing or unexpected or misshaped:
        raise CheckpointError(path, missing, unexpected, misshaped)


def save_checkpoint(model: AiTVQVAE, path: str | os.PathLike, extra_metadata: Mapping[str, str] | None = None,
                    dtype: torch.dtype | None = None, input_scaling: str = "signed") -> None:
    """Write the model's state dict as safetensors, config and input scaling in the metadata; atomic (temp then
    rename).

    ``dtype`` (e.g. float16) shrinks a file meant for shipping; loading converts back to float32.
    """
    if input_scaling not in INPUT_SCALINGS:
        raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}, got {input_scaling!r}")
    from safetensors.torch import save_file

    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    meta = {_CONFIG_METADATA_KEY: model.config.to_json(), "format": "AiT depth VQ-VAE state dict",
            _SCALING_METADATA_KEY: input_scaling}
    meta.update(extra_metadata or {})
    tmp = f"{path}.tmp"
    save_file(sd, tmp, metadata=meta)
    os.chmod(tmp, 0o644)  # safetensors creates the file owner-only; a shipped or shared checkpoint is readable
    os.replace(tmp, path)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def maps_to_input(maps_u8: torch.Tensor, scaling: str = "signed") -> torch.Tensor:
    """uint8 [N, S, S] -> float [N, 1, S, S]: ``signed`` [-1, 1] as AURORA trained it (ToTensor, Normalize(0.5,
    0.5)); ``unit`` [0, 1] as MolmoAct's preprocessing feeds it (ToTensor only: the same float32 division by 255)."""
    if scaling == "unit":
        return maps_u8.float().div(255).unsqueeze(1)
    if scaling == "signed":
        return (maps_u8.float() / 127.5 - 1.0).unsqueeze(1)
    raise ValueError(f"input scaling must be one of {INPUT_SCALINGS}, got {scaling!r}")


def output_to_maps(y: torch.Tensor, scaling: str = "signed") -> torch.Tensor:
    """Decoder output [N, 1, S, S] in the input's units -> uint8 [N, S, S]."""
    u8 = y[:, 0].float() * 255.0 if scaling == "unit" else (y[:, 0].float() + 1.0) * 127.5
    return u8.round().clamp(0, 255).to(torch.uint8)


class DepthTokenizer:
    """Encode 320x320 uint8 depth maps to 100 codes and back, with a checkpoint of the AiT layout.

    ``encode(maps uint8 [N, 320, 320]) -> int64 [N, 100]`` (raster order, 0-based);
    ``decode(codes [N, 100]) -> uint8 [N, 320, 320]``. Inference only (eval mode, no gradients).
    """

    def __init__(self, model: AiTVQVAE, path: str | None = None, sha256: str | None = None,
                 device: str = "cpu", batch_size: int = 64, input_scaling: str = "signed"):
        if input_scaling not in INPUT_SCALINGS:
            raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}, got {input_scaling!r}")
        self.input_scaling = input_scaling
        self.model = model.eval().to(device)
        self.config = model.config
        self.path = path
        self.sha256 = sha256
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, config: VQVAEConfig | None = None, device: str = "cpu",
                        batch_size: int = 64, input_scaling: str = "signed") -> "DepthTokenizer":
        """Load a checkpoint: MolmoAct's ``vae-final.pt`` layout, or one this package trained (.safetensors).

        ``input_scaling`` applies where the file records none (AiT ``.pt`` files); a recorded one wins.
        The config comes from ``config``, else from the file's metadata, else MolmoAct's. Every key is checked
        against the layout first (the committed manifest for MolmoAct's config); a mismatch raises
        :class:`CheckpointError` naming the missing, unexpected and mis-shaped keys.
        """
        path = str(path)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ArmdataError(f"depth tokenizer: device {device!r} asked for but CUDA is not available")
        sd, stored, stored_scaling = read_checkpoint_meta(path)
        cfg = config or stored or MOLMOACT_VQVAE
        expected = load_manifest() if cfg == MOLMOACT_VQVAE else expected_state_shapes(cfg)
        check_state_dict(sd, expected, path)
        model = AiTVQVAE(cfg)
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
        return cls(model, path=path, sha256=sha256_file(path), device=device, batch_size=batch_size,
                   input_scaling=stored_scaling or input_scaling)

    def _check_maps(self, maps: np.ndarray) -> np.ndarray:
        maps = np.asarray(maps)
        s = self.config.image_size
        if maps.ndim == 2:
            maps = maps[None]
        if maps.dtype != np.uint8 or maps.ndim != 3 or maps.shape[1:] != (s, s):
            raise ValueError(f"depth maps must be uint8 [N, {s}, {s}], got {maps.dtype} {list(maps.shape)}")
        return maps

    @torch.no_grad()
    def encode(self, maps_u8: np.ndarray) -> np.ndarray:
        """uint8 [N, 320, 320] -> int64 [N, 100]: the 10x10 code grid row by row."""
        maps = self._check_maps(maps_u8)
        out = np.empty((maps.shape[0], self.config.num_codes), dtype=np.int64)
        for i in range(0, maps.shape[0], self.batch_size):
            x = maps_to_input(torch.from_numpy(maps[i : i + self.batch_size]).to(self.device), self.input_scaling)
            z = self.model.encoder(x)
            flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
            idx = self.model._vq_vae.nearest(flat).reshape(z.shape[0], -1)
            out[i : i + len(idx)] = idx.cpu().numpy()
        return out

    @torch.no_grad()
    def decode(self, codes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """int [N, 100] codes -> uint8 [N, 320, 320] reconstructed depth maps (for audits)."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim == 1:
            codes = codes[None]
        g, k = self.config.grid, self.config.num_tokens
        if codes.ndim != 2 or codes.shape[1] != g * g:
            raise ValueError(f"codes must be [N, {g * g}], got {list(codes.shape)}")
        if codes.size and (codes.min() < 0 or codes.max() >= k):
            raise ValueError(f"codes must lie in [0, {k}), got [{codes.min()}, {codes.max()}]")
        out = np.empty((codes.shape[0], self.config.image_size, self.config.image_size), dtype=np.uint8)
        for i in range(0, codes.shape[0], self.batch_size):
            idx = torch.from_numpy(codes[i : i + self.batch_size]).to(self.device).reshape(-1, g, g)
            y = self.model.decoder(self.model._vq_vae.lookup(idx))
            out[i : i + len(idx)] = output_to_maps(y, self.input_scaling).cpu().numpy()
        return out

    def provenance(self) -> dict:
        """What made the tokens: checkpoint path and sha256, architecture, input scaling."""
        return {
            "tokenizer": "AiT depth VQ-VAE",
            "path": self.path,
            "sha256": self.sha256,
            "config": dataclasses.asdict(self.config),
            "input_scaling": self.input_scaling,
            "input": ("x = u8 / 255 (MolmoAct's ToTensor, no Normalize)" if self.input_scaling == "unit"
                      else "x = u8 / 127.5 - 1 (AURORA's ToTensor + Normalize(0.5, 0.5))"),
            "code_order": "raster (row-major) over the grid, 0-based",
        }


def depth_text(codes: Iterable[int], num_tokens: int = 128) -> str:
    """``<DEPTH_START><DEPTH_k>...<DEPTH_END>`` for one map's codes (MolmoAct's and AURORA's text form)."""
    ks = [int(k) for k in np.asarray(list(codes)).reshape(-1)]
    bad = [k for k in ks if not 0 <= k < num_tokens]
    if bad:
        raise ValueError(f"depth codes must lie in [0, {num_tokens}), got {bad[:5]}")
    return DEPTH_START + "".join(f"<DEPTH_{k}>" for k in ks) + DEPTH_END


def parse_depth_text(text: str) -> np.ndarray:
    """Inverse of :func:`depth_text`: int64 [K] codes from ``<DEPTH_START>...<DEPTH_END>``."""
    start, end = text.find(DEPTH_START), text.find(DEPTH_END)
    if start < 0 or end < start:
        raise ValueError("no <DEPTH_START>...<DEPTH_END> span in the text")
    body = text[start + len(DEPTH_START) : end]
    ks = _DEPTH_TOKEN_RE.findall(body)
    if _DEPTH_TOKEN_RE.sub("", body).strip():
        raise ValueError(f"unexpected text between depth tokens: {_DEPTH_TOKEN_RE.sub('', body)[:40]!r}")
    return np.asarray([int(k) for k in ks], dtype=np.int64)


def default_demo_tokenizer_path() -> str:
    """The small tokenizer trained on the built-in sample's depth maps (for the offline demo).

    Not MolmoAct's weights: narrower (see its metadata) so that it ships in the package; its codes mean nothing
    to a released MolmoAct model. Regenerate with ``python scripts/train_demo_depth_tokenizer.py``.
    """
    path = Path(__file__).resolve().parents[2] / "assets" / "depth_tokenizer_demo.safetensors"
    if not path.exists():
        raise ArmdataError(f"{path}: the demo depth tokenizer is missing; run scripts/train_demo_depth_tokenizer.py")
    return str(path)


if __name__ == "__main__":
    write_manifest()
    print(f"wrote {MANIFEST_PATH}")
