"""Depth maps for MolmoAct's depth tokens: frames (or a depth camera) -> uint8 [N, 320, 320].

Two backends behind one small interface (``setup()``, ``process_batch()``, ``provenance()``), chosen by name from
a strict registry (:func:`make_depth_backend`):

- ``depth-anything``: Depth Anything V2 through ``transformers.AutoModelForDepthEstimation`` and its image
  processor (hub id, short name ``small``/``base``/``large``, or a local directory). Frames are resized by the
  processor as Depth Anything V2 does (keep aspect, the shorter side to ``input_size``, multiple of 14), the model
  predicts relative inverse depth (disparity: near = large), which is resized back to the frame's size
  (bilinear, as Depth Anything's ``infer_image`` does).
- ``depth-camera``: a depth camera's metric depth (metres; 0 or NaN = no reading) -> inverse depth, so that both
  backends hand the same kind of map (near = bright) to the tokenizer. Missing readings become the farthest value.

Both then apply the same :func:`inverse_depth_to_u8_320`: per-image min-max to [0, 255] truncated to uint8 (Depth
Anything V2's ``run.py`` grayscale output, the 8-bit maps AURORA/MolmoAct trained the VQ-VAE on), then a bilinear
resize to 320x320 that does not keep the aspect ratio (the tokenizer's input size).

Two preprocessing conventions (``preprocess``):

- ``"molmoact"``: exactly what MolmoAct's released preprocessing computes (``preprocess/processors.py``: the
  original Depth-Anything-V2 ``infer_image(bgr, 518)``, then ``(d - min) / (max - min + 1e-8) * 255`` truncated to
  uint8, then torchvision ``Resize((320, 320))`` of the PIL image, i.e. PIL's bilinear resize). ``infer_image``'s
  own input path is reproduced in numpy/OpenCV (:func:`infer_image_input`): the short side scaled to at least
  ``input_size``, both sides rounded to a multiple of 14, ``cv2.INTER_CUBIC`` on the float image in [0, 1], ImageNet
  mean/std; its prediction is resized back with bilinear ``align_corners=True``. The transformers model computes
  the original network (its weights are the converted originals); on non-square inputs it would interpolate the
  position embeddings differently from the original (exact grid vs. a scale factor with a 0.1 offset), so this
  preprocessing switches it to the original's interpolation
  (:func:`~armdata.annotators.depth.original_checkpoint.use_original_position_interpolation`).
- ``"armdata"``: the transformers image processor's resize (PIL bicubic, aspect kept), no epsilon, OpenCV's
  bilinear resize to 320.

Licences (recorded in provenance): Depth Anything V2 Small is Apache-2.0; Base and Large are CC-BY-NC-4.0, i.e. data
made with them inherits a non-commercial restriction.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from armdata.schemas.errors import ArmdataError
from armdata.schemas.records import as_frames

logger = logging.getLogger(__name__)

MAP_SIZE = 320  # the VQ-VAE's input side; MolmoAct resizes every depth map to 320x320
PATCH = 14  # Depth Anything V2's ViT patch size; input sides are multiples of it


@dataclass(frozen=True)
class DepthModelInfo:
    """A released Depth Anything V2 checkpoint: where it lives and under which licence."""

    hub_id: str
    license: str
    params: str


# Short names users type -> released checkpoints (one table; nothing else repeats it).
DEPTH_ANYTHING_MODELS: dict[str, DepthModelInfo] = {
    "small": DepthModelInfo("depth-anything/Depth-Anything-V2-Small-hf", "Apache-2.0", "24.8M"),
    "base": DepthModelInfo("depth-anything/Depth-Anything-V2-Base-hf", "CC-BY-NC-4.0", "97.5M"),
    "large": DepthModelInfo("depth-anything/Depth-Anything-V2-Large-hf", "CC-BY-NC-4.0", "335.3M"),
}
DEFAULT_DEPTH_MODEL = "base"  # MolmoAct used ViT-B


class DeviceUnavailableError(ArmdataError):
    """A device was asked for and is not there. Never answered by quietly running elsewhere."""


class DepthModelError(ArmdataError):
    """A depth model folder or hub id that cannot be loaded (pickled weights are refused, never executed)."""


class InvalidDepthFrame(ArmdataError):
    """A depth-camera frame has no valid reading at all; ``frame_index`` is its index in the batch."""

    def __init__(self, frame_index: int, message: str):
        self.frame_index = frame_index
        super().__init__(f"depth frame {frame_index}: {message}")


PREPROCESS = ("molmoact", "armdata")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # Depth Anything V2's NormalizeImage
IMAGENET_STD = (0.229, 0.224, 0.225)
MOLMOACT_EPS = 1e-8  # MolmoAct's min-max: (d - min) / (max - min + 1e-8) * 255


def minmax_u8_molmoact(d: np.ndarray) -> np.ndarray:
    """float32 [H, W] -> uint8 [H, W] as MolmoAct's ``inference_depth_from_rgb``: float32 arithmetic, then
    truncation (a constant map becomes 0)."""
    d = np.asarray(d, dtype=np.float32)
    return ((d - d.min()) / (d.max() - d.min() + MOLMOACT_EPS) * 255.0).astype(np.uint8)


def resize_u8_pil(m: np.ndarray, size: int = MAP_SIZE) -> np.ndarray:
    """uint8 [H, W] -> uint8 [size, size] with PIL's bilinear resize (what torchvision's ``Resize`` does to a PIL
    image; PIL filters over the whole footprint when it shrinks, OpenCV's INTER_LINEAR samples 2x2)."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(m)).resize((size, size), Image.BILINEAR))


def inverse_depth_to_u8_320(inv_depth: np.ndarray, size: int = MAP_SIZE, preprocess: str = "armdata") -> np.ndarray:
    """float [N, H, W] relative inverse depth -> uint8 [N, size, size].

    ``armdata``: per image ``(d - min) / (max - min) * 255`` truncated to uint8 (a constant image becomes 0), then
    OpenCV's bilinear resize to ``size`` x ``size`` that ignores the aspect ratio. ``molmoact``:
    :func:`minmax_u8_molmoact` then :func:`resize_u8_pil`. Non-finite values are not allowed here.
    """
    d = np.asarray(inv_depth, dtype=np.float32)
    if d.ndim != 3:
        raise ValueError(f"inverse depth must be [N, H, W], got {list(d.shape)}")
    if not np.isfinite(d).all():
        raise ValueError("inverse depth holds NaN or inf; mask invalid readings first")
    if preprocess == "molmoact":
        return np.stack([resize_u8_pil(minmax_u8_molmoact(m), size) for m in d])
    if preprocess != "armdata":
        raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
    lo = d.min(axis=(1, 2), keepdims=True)
    span = d.max(axis=(1, 2), keepdims=True) - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(span > 0, (d - lo) / np.where(span > 0, span, 1.0) * 255.0, 0.0)
    u8 = scaled.astype(np.uint8)
    out = np.empty((d.shape[0], size, size), dtype=np.uint8)
    for i, m in enumerate(u8):
        out[i] = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def infer_image_size(h: int, w: int, input_size: int = 518, multiple: int = PATCH) -> tuple[int, int]:
    """(height, width) Depth-Anything-V2's ``infer_image`` resizes an (h, w) image to: keep the aspect ratio with
    both sides at least ``input_size`` (its ``lower_bound`` method), each side rounded to a multiple of 14 with
    numpy's round-half-to-even, rounded up instead where that falls below ``input_size``."""
    scale = max(input_size / h, input_size / w)

    def side(x: float) -> int:
        y = int(np.round(x / multiple) * multiple)
        return int(np.ceil(x / multiple) * multiple) if y < input_size else y

    return side(scale * h), side(scale * w)


def infer_image_input(frames: np.ndarray, input_size: int = 518) -> np.ndarray:
    """uint8 RGB [N, H, W, 3] -> float32 [N, 3, h, w], the network input ``infer_image`` makes: RGB / 255 as float64,
    ``cv2.INTER_CUBIC`` to :func:`infer_image_size`, ImageNet mean/std, float32."""
    frames = np.asarray(frames)
    h, w = infer_image_size(frames.shape[1], frames.shape[2], input_size)
    mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
    out = np.empty((frames.shape[0], 3, h, w), dtype=np.float32)
    for i, f in enumerate(frames):
        x = cv2.resize(f / 255.0, (w, h), interpolation=cv2.INTER_CUBIC)
        out[i] = ((x - mean) / std).transpose(2, 0, 1).astype(np.float32)
    return out


def metric_depth_to_inverse(depth_m: np.ndarray) -> np.ndarray:
    """float [N, H, W] metres (0 / NaN / inf / negative = no reading) -> float32 inverse depth (1/m).

    Missing readings take the smallest valid inverse depth of their frame (the farthest point seen), so that they
    map to 0 after min-max and do not create false near objects. A frame without any valid reading raises
    :class:`InvalidDepthFrame`.
    """
    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 3:
        raise ValueError(f"depth must be [N, H, W] metres, got {list(d.shape)}")
    valid = np.isfinite(d) & (d > 0)
    inv = np.zeros_like(d)
    np.divide(1.0, d, out=inv, where=valid)
    for i in range(d.shape[0]):
        if not valid[i].any():
            raise InvalidDepthFrame(i, "no valid depth reading (all 0 or NaN)")
        inv[i][~valid[i]] = inv[i][valid[i]].min()
    return inv


class DepthBackend(ABC):
    """Makes the 320x320 uint8 depth maps the tokenizer codes. ``setup()`` once, then ``process_batch`` often."""

    name: str = ""

    @abstractmethod
    def setup(self) -> None:
        """Load models, check devices. Raises at once if what was asked for is not available."""

    @abstractmethod
    def process_batch(self, batch: np.ndarray) -> np.ndarray:
        """frames uint8 [N, H, W, 3] (or depth [N, H, W] for a depth camera) -> uint8 [N, 320, 320]."""

    @abstractmethod
    def provenance(self) -> dict:
        """What made the maps: backend, model id, revision, licence, settings (JSON-serialisable)."""


_BACKENDS: dict[str, type[DepthBackend]] = {}


def register_depth_backend(name: str) -> Callable[[type[DepthBackend]], type[DepthBackend]]:
    """Class decorator: add a backend under ``name``. A name can be registered once."""

    def deco(cls: type[DepthBackend]) -> type[DepthBackend]:
        if name in _BACKENDS:
            raise ValueError(f"depth backend {name!r} is already registered ({_BACKENDS[name].__name__})")
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return deco


def depth_backend_names() -> list[str]:
    return sorted(_BACKENDS)


def make_depth_backend(name: str, **kw) -> DepthBackend:
    """A backend by registered name (``depth-anything`` | ``depth-camera``); unknown names list the known ones."""
    try:
        cls = _BACKENDS[name]
    except KeyError:
        raise ArmdataError(
            f"unknown depth backend {name!r}; known: {', '.join(depth_backend_names())}"
        ) from None
    return cls(**kw)


def resolve_depth_model(model: str) -> tuple[str, DepthModelInfo | None]:
    """A short name, hub id or local directory -> (what to load, the released model's info if it is one)."""
    if model in DEPTH_ANYTHING_MODELS:
        info = DEPTH_ANYTHING_MODELS[model]
        return info.hub_id, info
    for info in DEPTH_ANYTHING_MODELS.values():
        if model == info.hub_id:
            return model, info
    if os.path.isdir(model) or (os.path.isfile(model) and model.endswith((".pth", ".pt"))):
        return model, None
    if "/" in model and not model.startswith((".", "/")):
        return model, None  # some other hub id; its licence is the user's to check
    raise ArmdataError(
        f"depth model {model!r} is neither a local directory nor a hub id; "
        f"short names: {', '.join(DEPTH_ANYTHING_MODELS)}"
    )


@register_depth_backend("depth-anything")
class DepthAnythingBackend(DepthBackend):
    """Depth Anything V2 (transformers) on RGB frames.

    model:       ``small`` | ``base`` | ``large``, a hub id, or a local directory with config, weights and the
                 image processor's config (what ``save_pretrained`` writes).
    input_size:  the shorter side the processor resizes to; a multiple of 14 (518 as released; 252 is ~7x faster).
    device:      ``cpu`` or ``cuda[:i]``. CUDA asked for and absent is an error at ``setup()``.
    dtype:       ``auto`` (bf16 on CUDA where supported, else fp16; fp32 on CPU), ``fp32``, ``bf16``, ``fp16``.
    revision:    hub revision to pin (recorded in provenance either way, resolved where the hub tells it).
    batch_size:  frames per forward pass inside one ``process_batch`` call (bounds memory).
    license:     the licence of a local/unknown model, for provenance (released models carry their own).
    preprocess:  ``armdata`` (the transformers image processor) or ``molmoact`` (``infer_image``'s resize and
                 MolmoAct's min-max; see the module docstring).

    ``model`` may also be an original Depth-Anything-V2 checkpoint file (``depth_anything_v2_vit{s,b,l}.pth``, the
    files MolmoAct's README points to): it is converted into the same transformers model on load
    (:mod:`armdata.annotators.depth.original_checkpoint`).
    """

    def __init__(self, model: str = DEFAULT_DEPTH_MODEL, input_size: int = 518, device: str = "cpu",
                 dtype: str = "auto", revision: str | None = None, batch_size: int = 8,
                 license: str | None = None, torch_threads: int | None = None, preprocess: str = "armdata"):
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
        self.preprocess = preprocess
        if input_size <= 0 or input_size % PATCH:
            raise ValueError(f"input_size must be a positive multiple of {PATCH}, got {input_size}")
        if dtype not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"dtype must be auto, fp32, bf16 or fp16, got {dtype!r}")
        if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}")
        if device == "cpu" and dtype in ("bf16", "fp16"):
            raise ValueError("half precision is for CUDA; on CPU the model runs in fp32")
        self.model_arg = model
        self.model_path, self.info = resolve_depth_model(model)
        if self.info is None and os.path.isfile(self.model_path):
            from armdata.annotators.depth.original_checkpoint import original_licence

            license = license or original_licence(self.model_path)
        self.input_size = input_size
        self.device = device
        self.dtype_name = dtype
        self.revision = revision
        self.batch_size = max(1, int(batch_size))
        self.license = self.info.license if self.info else (license or "unknown")
        self.torch_threads = torch_threads
        self.model = None
        self.processor = None
        self._resolved_revision: str | None = None

    def setup(self) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise DeviceUnavailableError(
                    f"depth-anything: device {self.device!r} asked for, but CUDA is not available here"
                )
            if self.dtype_name == "auto":
                self.dtype_name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif self.dtype_name == "auto":
            self.dtype_name = "fp32"
        self.torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.dtype_name]
        try:
            if os.path.isfile(self.model_path):
                from armdata.annotators.depth.original_checkpoint import load_original_checkpoint, released_processor

                model = load_original_checkpoint(self.model_path)
                self.processor = released_processor()
            else:
                kw = {"revision": self.revision} if self.revision else {}
                self.processor = AutoImageProcessor.from_pretrained(self.model_path, **kw)
                model = AutoModelForDepthEstimation.from_pretrained(self.model_path, **kw)
        except Exception as e:  # pickled weights (refused: weights-only loading), a missing or broken folder
            first = " ".join(str(e).split("\n\n")[0].split()) or type(e).__name__
            raise DepthModelError(f"depth-anything: cannot load {self.model_path!r}: {type(e).__name__}: {first}")
        self._resolved_revision = model_revision(self.model_path, model, self.revision)
        if self.preprocess == "molmoact":
            from armdata.annotators.depth.original_checkpoint import use_original_position_interpolation

            use_original_position_interpolation(model)
        self.model = model.to(device=self.device, dtype=self.torch_dtype).eval()
        logger.info("depth-anything %s on %s (%s), input %d", self.model_path, self.device, self.dtype_name,
                    self.input_size)

    def predict_inverse_depth(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N, H, W] relative inverse depth at the frames' own size."""
        import torch
        import torch.nn.functional as F

        if self.model is None:
            raise RuntimeError("call setup() first")
        frames = as_frames(frames, "N")
        h, w = frames.shape[1:3]
        out = np.empty(frames.shape[:3], dtype=np.float32)
        size = {"height": self.input_size, "width": self.input_size}
        for i in range(0, frames.shape[0], self.batch_size):
            chunk = list(frames[i : i + self.batch_size])
            if self.preprocess == "molmoact":
                pix = torch.from_numpy(infer_image_input(np.stack(chunk), self.input_size))
            else:
                pix = self.processor(images=chunk, return_tensors="pt", size=size)["pixel_values"]
            with torch.inference_mode():
                pred = self.model(pixel_values=pix.to(self.device, self.torch_dtype)).predicted_depth
                pred = F.interpolate(pred.float()[:, None], (h, w), mode="bilinear", align_corners=True)[:, 0]
            out[i : i + len(chunk)] = pred.cpu().numpy()
        return out

    def process_batch(self, batch: np.ndarray) -> np.ndarray:
        return inverse_depth_to_u8_320(self.predict_inverse_depth(batch), preprocess=self.preprocess)

    def revision_id(self) -> str | None:
        """The hub commit of the weights, or ``sha256:...`` of a local directory's or file's content; resolved
        without loading the model (the resume key and run.json need it on the machine that launches the job)."""
        return self._resolved_revision or model_revision(self.model_path, None, self.revision)

    def provenance(self) -> dict:
        return {
            "backend": self.name,
            "model": self.model_arg,
            "model_id": self.model_path,
            "revision": self.revision_id(),
            "license": self.license,
            "input_size": self.input_size,
            "device": self.device,
            "dtype": self.dtype_name,
            "preprocess": self.preprocess,
            "output": ("infer_image (cv2 cubic, short side >= input_size, multiple of 14; bilinear align_corners "
                       "back), min-max (+1e-8) truncated to uint8, PIL bilinear 320x320"
                       if self.preprocess == "molmoact" else
                       "relative inverse depth, per-image min-max to uint8, bilinear 320x320"),
        }


def content_digest(path: str) -> str:
    """``sha256:<hex>`` over a file, or over a directory's files (relative names and bytes, in name order)."""
    import hashlib

    h = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
    for f in files:
        h.update(os.path.relpath(f, path).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def model_revision(path: str, model=None, asked: str | None = None) -> str | None:
    """What identifies the weights: a local file's or directory's content digest; for a hub id the commit the
    loaded model reports, else the one the hub resolves ``asked`` to (None where no hub answers)."""
    if os.path.exists(path):
        return content_digest(path)
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    if commit:
        return commit
    from transformers.utils.hub import resolve_revision

    resolved = resolve_revision(path, asked)  # best effort: the revision asked for where no hub answers
    return getattr(resolved, "resolved", None) or (str(resolved) if resolved else None)


@register_depth_backend("depth-camera")
class DepthCameraBackend(DepthBackend):
    """A depth camera's metric depth -> the same 320x320 uint8 inverse-depth map.

    scale:  multiply the input by this to get metres (1.0 when the standardizer already did, 0.001 for raw mm).
    camera: the source's depth field, recorded in provenance.
    """

    def __init__(self, scale: float = 1.0, camera: str | None = None, preprocess: str = "armdata"):
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
        self.scale = float(scale)
        self.camera = camera
        self.preprocess = preprocess

    def setup(self) -> None:
        pass

    def process_batch(self, batch: np.ndarray) -> np.ndarray:
        d = np.asarray(batch)
        if d.ndim == 4 and d.shape[-1] == 1:
            d = d[..., 0]
        if d.ndim != 3:
            raise ValueError(f"depth must be [N, H, W], got {list(d.shape)}")
        inv = metric_depth_to_inverse(d.astype(np.float32) * np.float32(self.scale))
        return inverse_depth_to_u8_320(inv, preprocess=self.preprocess)

    def provenance(self) -> dict:
        return {
            "backend": self.name,
            "camera": self.camera,
            "scale_to_metres": self.scale,
            "preprocess": self.preprocess,
            "license": None,  # the data's own licence applies
            "output": "inverse of metric depth (invalid = farthest), per-image min-max to uint8, bilinear 320x320",
        }
