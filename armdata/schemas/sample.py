"""The annotate job's outputs: one sample per (episode, step), shard manifests, and the output folder layout.

A sample's structured annotation (``SampleAnnotation``, stored as the ``json`` member) is the source of truth;
every text is rendered from it by a versioned template (``armdata.schemas.templates``), so re-rendering needs no
model. Images are stored once per step: ``jpg`` (the primary camera, the source's JPEG bytes passed through where
possible), ``{view}.jpg`` for extra views, and ``traj.png`` (the trace drawn as MolmoAct's loader draws it) when
the config stores drawn images.

Output folder (``OUT``)::

    OUT/shards/armdata-00000-of-00004.tar         WebDataset shards (deterministic names)
    OUT/shards/armdata-00000-of-00004.json        per-shard manifest (ShardManifest)
    OUT/index.parquet                             one row per sample (INDEX_COLUMNS)
    OUT/dataset_statistics.json                   action statistics (OpenVLA/MolmoAct layout)
    OUT/failures.jsonl                            dead letters (RecordError.to_dict() per line)
    OUT/run.json                                  config, config hash, versions, models, command line
    OUT/README.md                                 dataset card
    OUT/audit/index.html, OUT/audit/audit.json    the audit report
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from armdata.schemas.records import check_key

SCHEMA_VERSION = 2  # 2: source_episode_id
SHARDS_DIR = "shards"
SHARD_PREFIX = "armdata"
INDEX_FILE = "index.parquet"
STATS_FILE = "dataset_statistics.json"
FAILURES_FILE = "failures.jsonl"
RUN_FILE = "run.json"
CARD_FILE = "README.md"
AUDIT_DIR = "audit"

NUM_DEPTH_CODES = 100
DEPTH_CODEBOOK = 128
NUM_ACTION_BINS = 256  # token ids are the last 256 of the vocabulary
TRACE_MAX_POINTS = 5

# Members every sample has (plus one `{view}.jpg` per extra view of its source, and `traj.png` when drawn
# images are stored).
REQUIRED_MEMBERS = ("jpg", "json")

# Flags a step may carry.
FLAG_NO_TRACE = "no_trace"  # no valid future end-effector point: the step has no trace (never a made-up one)
FLAG_NO_POINT = "no_point"  # the end effector was not found in this frame
FLAG_DISAGREE = "pointer_tracker_disagree"  # pointer and tracker disagree by more than the threshold
FLAG_ACTION_CLIPPED = "action_clipped"  # a normalized action value was clipped at +-1
FLAG_EMPTY_INSTRUCTION = "empty_instruction"  # the episode's instruction is empty or a placeholder (kept by policy)
FLAG_CONSTANT_CAMERA = "constant_camera"  # a used camera shows one colour in every frame (kept by policy)

INDEX_COLUMNS = ("key", "shard", "source", "episode", "source_episode_id", "step", "instruction", "flags")


def sample_key(source: str, episode: str, step: int) -> str:
    """``{source}__{episode}__{step:05d}``: no dots (WebDataset splits names at the first dot)."""
    return check_key(f"{source}__{episode}__{step:05d}", "sample key")


def parse_sample_key(key: str) -> tuple[str, str, int]:
    source, episode, step = key.split("__")
    return source, episode, int(step)


@dataclass(frozen=True)
class GripperPoint:
    """The end effector in this step's primary frame, in pixels (u right, v down), or None when not found."""

    uv: list[float] | None
    method: str
    confidence: float


@dataclass(frozen=True)
class ActionAnnotation:
    """raw: canonical 7-D action; normalized: in [-1, 1] (gripper unnormalized, clipped); bins: np.digitize
    output d in 1..256; ids: token ids (vocab_size - d), the source of truth; chunk_ids: [N][7] ids of this and the next N-1 steps
    (padded with the last action) when chunks are on, else None."""

    raw: list[float]
    normalized: list[float]
    bins: list[int]
    ids: list[int]
    symbols: list[str]  # the vocabulary's own symbols of `ids` (convert_ids_to_tokens), as they appear in text
    vocab_size: int
    chunk_ids: list[list[int]] | None = None


@dataclass(frozen=True)
class SampleAnnotation:
    """The ``json`` member of a sample. Lists, not arrays, so it is plain JSON."""

    key: str
    source: str
    episode: str
    step: int
    num_steps: int
    instruction: str
    image_size: list[int]  # [height, width] of the primary image
    views: list[str]  # extra view names stored as `{view}.jpg`
    depth_codes: list[int] | None  # 100 codes in [0, 128), raster order over the 10x10 grid
    trace_uv255: list[list[int]] | None  # 1..5 points in [0, 255], the first at this step; None: no trace
    gripper: GripperPoint
    action: ActionAnnotation
    flags: list[str]
    text: dict[str, dict[str, str]]  # template name -> {"prompt": ..., "answer": ...}
    template_version: str
    provenance_id: str  # the config hash; OUT/run.json holds the models, revisions and licences
    ground_truth: dict[str, Any] = field(default_factory=dict)  # e.g. {"gripper_uv": [u, v]} on the sample
    # The episode's id in the source data (RLDS episode_metadata/file_path, '#episode_id' appended where present;
    # else the episode key),
    # so every annotation maps back to the original episode.
    source_episode_id: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        # json's C encoder walks the lists; dataclasses.asdict would deep-copy every value first (a third of the
        # sample stage's time). Same bytes.
        return json.dumps(_shallow_dict(self), sort_keys=True, separators=(",", ":"),
                          default=_shallow_dict).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str | dict) -> "SampleAnnotation":
        d = json.loads(data) if isinstance(data, (bytes, str)) else dict(data)
        d["gripper"] = GripperPoint(**d["gripper"])
        d["action"] = ActionAnnotation(**d["action"])
        return cls(**d)


def _shallow_dict(obj) -> dict:
    """A dataclass instance's fields as a dict, not recursing (json.dumps calls this again for nested ones)."""
    if not is_dataclass(obj):
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True)
class ShardManifest:
    """Written beside each shard as ``<shard>.json``; the checker compares it with the tar."""

    shard: str  # file name, e.g. armdata-00000-of-00004.tar
    num_samples: int
    num_bytes: int
    sha256: str
    keys: list[str]
    episodes: list[str]  # "{source}__{episode}"
    config_hash: str
    # key -> member extension -> sha256 of its bytes, so a damaged byte is named by sample and member
    # (empty in manifests written before armdata recorded it).
    members: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ShardManifest":
        return cls(**json.loads(text))


def shard_name(index: int, count: int) -> str:
    return f"{SHARD_PREFIX}-{index:05d}-of-{count:05d}.tar"


def hf_features(views: list[str] = (), drawn_member: str | None = "traj.png", templates: list[str] | None = None):
    """``datasets.Features`` of a shard's samples, for ``datasets.load_dataset("webdataset", ...,
    features=hf_features(...))``.

    Hugging Face infers a schema from the first few samples; where those have no flags or no trace (an empty
    list, a null) the inferred type cannot hold later values, so pass this schema, made from the same dataclasses
    the writer uses.
    """
    import datasets as hfd

    from armdata.schemas.templates import TEMPLATES

    s, i32, f32 = hfd.Value("string"), hfd.Value("int32"), hfd.Value("float32")
    seq = hfd.Sequence
    text = {name: {"prompt": s, "answer": s} for name in (templates or TEMPLATES.names())}
    ann = {
        "key": s, "source": s, "episode": s, "step": i32, "num_steps": i32, "instruction": s,
        "image_size": seq(i32), "views": seq(s), "depth_codes": seq(i32), "trace_uv255": seq(seq(i32)),
        "gripper": {"uv": seq(f32), "method": s, "confidence": f32},
        "action": {"raw": seq(f32), "normalized": seq(f32), "bins": seq(i32), "ids": seq(i32), "symbols": seq(s),
                   "vocab_size": i32, "chunk_ids": seq(seq(i32))},
        "flags": seq(s), "text": text, "template_version": s, "provenance_id": s,
        "ground_truth": {"gripper_uv": seq(f32)}, "source_episode_id": s, "schema_version": i32,
    }
    feats = {"__key__": s, "__url__": s, "jpg": hfd.Image(), "json": ann}
    for v in views:
        feats[f"{v}.jpg"] = hfd.Image()
    if drawn_member:
        feats[drawn_member] = hfd.Image()
    return hfd.Features(feats)
