"""The annotate job's one typed config: a YAML file, then flags, then ``--set section.field=value``.

Its hash (with the source files' fingerprints and armdata's version) names the job's work folder: a rerun with
the same hash resumes; a changed config starts a new folder and never mixes old and new samples.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from armdata.schemas.errors import ArmdataError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DepthSettings(_Section):
    backend: Literal["auto", "depth-anything", "depth-camera"] = Field(
        "auto", description="auto: the source's depth camera if it has one and no model is given, else the model"
    )
    model: str | None = Field(None, description="Depth Anything hub id or local dir (None: the default, Base)")
    input_size: int = Field(518, description="model input size, a multiple of 14 (MolmoAct uses 518)")
    device: str = Field("cpu", description="cpu or cuda; cuda absent fails at start, never a silent fallback")


class DepthTokenizerSettings(_Section):
    checkpoint: str | None = Field(
        None, description="VQ-VAE checkpoint (.pt AiT layout or .safetensors); required except on the built-in sample"
    )


class TraceSettings(_Section):
    mode: Literal["track", "point-every-frame", "point-keyframes"] = "track"
    locator: str = Field("auto", description="projection | fit | hint | pointer | auto (projection if calibrated, fit if points "
                         "tables are given, else hint)")
    tracker: str = Field("auto", description="auto (cotracker if installed with a checkpoint, else hybrid) | hybrid | "
                                             "lk | template | cotracker | sam2")
    keyframe_every: int = Field(10, description="point-keyframes: frames between pointer calls")
    pointer_model: str | None = Field(None, description="pointing VLM hub id or local dir (pointer locator)")
    pointer_trust_remote_code: bool = Field(False, description="let Molmo 1 checkpoints run their shipped code")
    pointer_device: str = Field("cpu", description="pointer's torch device (cuda on GPU workers)")
    pointer_arm: Literal["left", "right"] | None = Field(None, description="two-arm robots: which gripper")
    tracker_checkpoint: str | None = Field(None, description="cotracker: CoTracker3 .pth; sam2: Sam2Video dir or id")
    tracker_device: str = Field("cpu", description="cotracker/sam2 torch device (cuda on GPU workers)")
    disagreement_px: float = Field(6.0, description="point-keyframes: located vs tracked distance that is disputed")
    points: list[str] = Field(
        default_factory=list, description="points tables (--points, repeatable) for the fit locator, besides the "
        "source file's locator_points")
    fit_inlier_px: float | None = Field(None, description="fit: inlier reprojection error (None: 2% of the diagonal)")
    fit_min_points: int = Field(8, description="fit: fewer located points than this is a poor fit")
    fit_min_inlier_fraction: float = Field(0.5, description="fit: share of points the camera must explain")
    fit_extrapolate_margin: float = Field(0.25, description="fit: flag positions this far outside the fitted box")


class ActionSettings(_Section):
    tokenizer: str = Field("Qwen/Qwen2-7B", description="tokenizer whose last 256 ids are the action tokens")
    chunk_size: int | None = Field(
        None, description="steps per stored action chunk; None: the preset's (molmoact 8, armdata 0 = none)"
    )
    statistics: str | None = Field(None, description="dataset_statistics.json to use; None: computed by stats")


class TemplateConfig(_Section):
    names: list[str] = Field(
        default_factory=lambda: ["reasoning", "trajectory_conditioned", "depth_only", "trace_only"],
        description="templates rendered for every sample",
    )
    information_phrase: Literal["this", "these"] = Field("this", description="MolmoAct loader: this; card: these")
    store_drawn_image: bool = Field(True, description="store traj.png (trace drawn) or only the points to draw")


class OutputSettings(_Section):
    episodes_per_shard: int = Field(32, description="shard count = ceil(episodes / this); episodes hashed to shards")
    jpeg_quality: int = Field(95, description="only for images the source did not store as JPEG, and traj.png")


class StageBatch(_Section):
    """Inputs per model call of one stage, by the device it runs on."""

    cpu: int = Field(8, ge=1, description="on CPU: past ~8 frames a bigger batch is no faster per frame")
    cuda: int = Field(64, ge=1, description="on a GPU: 32-128 frames per call keep it busy")

    def for_device(self, device: str) -> int:
        return self.cuda if device.startswith("cuda") else self.cpu


class BatchSettings(_Section):
    """Model calls span episodes (armdata/pipeline/stages/batching.py). Execution settings: not in the config
    hash, since a frame's output does not depend on its batch mates (changing them resumes the same run)."""

    depth: StageBatch = Field(default_factory=StageBatch, description="Depth Anything frames per call")
    depth_codes: StageBatch = Field(default_factory=lambda: StageBatch(cpu=32, cuda=256),
                                    description="VQ-VAE depth maps per call (a small model)")
    pointer: StageBatch = Field(default_factory=lambda: StageBatch(cpu=4, cuda=16),
                                description="frames per pointing-VLM (or detector) call")


# Sections that say how to run, not what to make: left out of the config hash.
EXECUTION_SECTIONS = {"batch"}


PRESETS = ("molmoact", "armdata")


class AnnotateConfig(_Section):
    preset: Literal["molmoact", "armdata"] = Field(
        "molmoact",
        description="molmoact: MolmoAct's released preprocessing (infer_image depth, PIL resize, [0, 1] VQ-VAE input, "
        "float32 actions, gripper 1 - a, 8-step chunks, its multi-view wording); armdata: armdata's own conventions",
    )
    depth: DepthSettings = Field(default_factory=DepthSettings)
    depth_tokenizer: DepthTokenizerSettings = Field(default_factory=DepthTokenizerSettings)
    trace: TraceSettings = Field(default_factory=TraceSettings)
    actions: ActionSettings = Field(default_factory=ActionSettings)
    templates: TemplateConfig = Field(default_factory=TemplateConfig)
    output: OutputSettings = Field(default_factory=OutputSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    max_failure_fraction: float = Field(0.05, description="the job fails only past this share of bad episodes")
    require_cuda: bool = Field(False, description="workers fail at start without a visible CUDA device (GPU presets)")
    torch_threads: int = Field(1, description="threads per worker; 1 keeps results identical across worker counts")

    @property
    def chunk_size(self) -> int:
        """Steps per stored action chunk (0: none), the preset's unless ``actions.chunk_size`` says otherwise."""
        if self.actions.chunk_size is not None:
            return self.actions.chunk_size
        return 8 if self.preset == "molmoact" else 0

    def config_hash(self, source_fingerprints: list[str], version: str, inputs: dict | None = None) -> str:
        """The resume key. ``inputs``: digests of what the config only names (the statistics file's content,
        the models' revisions or content digests), so new statistics or a new model never keep old tokens."""
        body = {"config": self.model_dump(mode="json", exclude=EXECUTION_SECTIONS), "sources": sorted(source_fingerprints), "version": version}
        if inputs:
            body["inputs"] = inputs
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _set_path(d: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def load_config(path: str | None = None, overrides: list[str] | None = None, **flags) -> AnnotateConfig:
    """File, then ``flags`` (dotted names -> values, None ignored), then ``--set a.b=value`` overrides."""
    raw: dict = {}
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f) or {}
        except OSError as e:
            raise ArmdataError(f"annotate config {path}: cannot read it ({e.strerror or e})") from None
        except yaml.YAMLError as e:  # also object tags (!!python/object): safe_load refuses them
            raise ArmdataError(f"annotate config {path}: not valid YAML: {_one_line(e)}") from None
        if not isinstance(raw, dict):
            raise ArmdataError(f"annotate config {path}: the top level must be a mapping of sections")
    for dotted, value in flags.items():
        if value is not None:
            _set_path(raw, dotted, value)
    for item in overrides or []:
        if "=" not in item:
            raise ArmdataError(f"--set {item!r}: expected section.field=value")
        k, v = item.split("=", 1)
        try:
            value = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise ArmdataError(f"--set {item!r}: the value is not valid YAML: {_one_line(e)}") from None
        try:
            _set_path(raw, k.strip(), value)
        except (AttributeError, TypeError):
            raise ArmdataError(f"--set {item!r}: {k.strip()} is not inside a section") from None
    try:
        return AnnotateConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ArmdataError(f"annotate config {path or '(flags)'}: {where}: {err['msg']}") from None
