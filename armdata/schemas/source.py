"""The robot source file: a declarative description of one RLDS dataset's layout.

Adding a robot is a file, not code. A source file says where the data is, which camera is primary, where the
instruction lives, and how the raw actions map onto the canonical 7-D delta end-effector action
``[x, y, z, roll, pitch, yaw, gripper]`` with gripper 1 = open.

Field paths are written with ``/`` into the RLDS example. A path that starts with ``episode_metadata/`` points
into the episode's metadata; any other path is a step field (``action``, ``observation/image_0``,
``action/world_vector``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from armdata.schemas.errors import SourceFileError

CANONICAL_ACTION = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
EPISODE_METADATA = "episode_metadata/"
BUILTIN_PREFIX = "builtin:"


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_key_part(v: str, what: str) -> str:
    """Source and split names are parts of sample keys ``{source}__{split}-{shard}-{record}__{step}``: letters,
    digits, '_' and '-', never '__' (the separator: a source ``r`` with split ``s__x`` and a source ``r__s`` with
    split ``x`` would give the same keys) and never a dot (WebDataset splits member names at the first dot)."""
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", v):
        raise ValueError(f"{what} {v!r} may hold letters, digits, '_' and '-' only (it is part of sample keys)")
    if "__" in v or v.startswith("_") or v.endswith("_"):
        raise ValueError(f"{what} {v!r} may not hold '__' or start or end with '_' ('__' separates the parts of "
                         "sample keys)")
    return v


class DataLocation(_Strict):
    dir: str = Field(description="TFDS builder directory: local path (relative to this file), gs://, s3://, or builtin:sample; "
                     "for format lerobot, a local LeRobot dataset folder (the one holding meta/info.json)")
    split: str = "train"
    format: Literal["rlds", "lerobot"] = Field(
        default="rlds", description="rlds: a TFDS builder dir; lerobot: a LeRobot v2.1 or v3.0 dataset folder, whose "
        "feature names (observation.images.front, observation.state, action, task_index) are the field paths")

    @field_validator("split")
    @classmethod
    def _split_is_key(cls, v: str) -> str:
        return check_key_part(v, "split")


class Cameras(_Strict):
    primary: str = Field(description="step field of the camera the annotations are made on")
    extra: list[str] = Field(default_factory=list, description="other third-person views, stored as extra images")
    wrist: str | None = Field(default=None, description="wrist camera, stored as an extra image")
    depth: str | None = Field(default=None, description="a depth camera aligned with the primary camera")
    depth_scale: float = Field(default=1.0, description="multiply raw depth-camera values by this to get metres")


class Instruction(_Strict):
    path: str = Field(description="step field, observation field, or episode_metadata/... field with the text")
    lowercase: bool = False


class ActionSegment(_Strict):
    """A slice of one raw action field, with a sign and a scale per element."""

    path: str
    index: list[int] | None = Field(default=None, description="elements to take; all when omitted")
    sign: float | list[float] = 1.0
    scale: float = 1.0

    @field_validator("index", mode="before")
    @classmethod
    def _index_list(cls, v):
        if isinstance(v, int):
            return [v]
        return v


class Gripper(_Strict):
    """How the raw gripper value becomes canonical 1 = open, 0 = closed.

    absolute: the raw value is the gripper's target opening; canonical = (raw - closed_value) /
    (open_value - closed_value), clipped to [0, 1].
    relative: the raw value is a command (RT-1's gripper_closedness_action: +1 close, -1 open, 0 keep);
    commands beyond +-threshold switch state, others keep the last state (the first state is the opposite of the
    first command), as Octo and OpenVLA convert it.
    """

    path: str
    index: int | None = None
    mode: Literal["absolute", "relative"] = "absolute"
    open_value: float = 1.0
    closed_value: float = 0.0
    close_command_sign: float = Field(default=1.0, description="relative mode: the sign of a 'close' command")
    threshold: float = 0.1
    binarize: bool = Field(default=False, description="round the canonical value to 0/1 at 0.5")


class ActionMap(_Strict):
    arm: list[ActionSegment] = Field(description="segments concatenated into x y z roll pitch yaw (6 values)")
    arm_mode: Literal["delta", "absolute"] = Field(
        default="delta", description="absolute: raw arm values are poses, deltas are taken between steps"
    )
    gripper: Gripper
    raw_width: dict[str, int] = Field(
        default_factory=dict, description="expected width of each raw action field; checked on every step"
    )


class StateMap(_Strict):
    keys: list[str] = Field(default_factory=list, description="state fields concatenated into the proprio vector")
    eef_position: ActionSegment | None = Field(
        default=None, description="the end effector's xyz in the robot base frame, for the projection locator"
    )


class Intrinsics(_Strict):
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int


class Calibration(_Strict):
    intrinsics: Intrinsics
    camera_from_base: list[list[float]] = Field(description="4x4 transform of base-frame points into the camera frame (x right, y down, z forward)")

    @field_validator("camera_from_base")
    @classmethod
    def _four_by_four(cls, v):
        if len(v) != 4 or any(len(r) != 4 for r in v):
            raise ValueError("camera_from_base must be a 4x4 matrix")
        return v


class LocatorHint(_Strict):
    pixel: tuple[float, float] | None = Field(default=None, description="(u, v) of the end effector in the first frame")
    region: tuple[float, float, float, float] | None = Field(default=None, description="(u0, v0, u1, v1) box around it")

    @model_validator(mode="after")
    def _one(self):
        if (self.pixel is None) == (self.region is None):
            raise ValueError("give exactly one of pixel or region")
        return self


Policy = Literal["skip", "keep-with-flag", "fail"]

# Instructions that say nothing (compared after cleaning and lower-casing).
DEFAULT_PLACEHOLDER_INSTRUCTIONS = (
    "", "none", "null", "nil", "n/a", "na", "nan", "todo", "tbd", "placeholder", "instruction", "task",
    "language instruction", "no instruction", "empty", "-", ".", "...", "?",
)


class Checks(_Strict):
    """What happens to an episode that reads fine but would teach nothing.

    skip: the episode is a dead letter (named, counted in the failure budget) and writes no samples (default).
    keep-with-flag: its samples are written, each carrying the flag (``empty_instruction``, ``constant_camera``).
    fail: the job stops at the first such episode, naming it.
    """

    empty_instruction: Policy = Field("skip", description="an instruction that is empty or a placeholder")
    placeholder_instructions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PLACEHOLDER_INSTRUCTIONS),
        description="texts that count as no instruction (compared lower-cased, whitespace collapsed)",
    )
    constant_camera: Policy = Field(
        "skip", description="a used camera (primary, extra, wrist) whose every frame is one colour (black, grey)"
    )
    constant_tolerance: int = Field(4, description="a frame is one colour when max - min of its pixels <= this")


class SourceConfig(_Strict):
    """One robot source. `name` becomes the dataset key in dataset_statistics.json and the sample key prefix."""

    name: str
    description: str = ""
    data: DataLocation
    cameras: Cameras
    instruction: Instruction
    action: ActionMap
    state: StateMap = Field(default_factory=StateMap)
    control_hz: float | None = None
    calibration: Calibration | None = None
    locator_hint: LocatorHint | None = None
    checks: Checks = Field(default_factory=Checks, description="empty instructions, one-colour cameras")
    locator_points: list[str] = Field(
        default_factory=list,
        description="points tables (JSONL, Parquet, or ECoT's embodied_features_bridge .json) of located gripper "
        "points; with state.eef_position the camera is fitted to them (locator: fit). Relative paths resolve "
        "against this file's folder; $VARS expand",
    )
    camera_moves_between_episodes: bool = Field(
        default=False, description="fit the camera per episode instead of once per source (locator: fit)"
    )
    unconfirmed: list[str] = Field(default_factory=list, description="settings not confirmed against real data")
    # Where the file was loaded from; relative data paths resolve against its folder.
    origin: str | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name_is_key(cls, v: str) -> str:
        return check_key_part(v, "name")

    def data_dir(self) -> str:
        """The data location, relative paths resolved against the source file's folder."""
        d = os.path.expanduser(os.path.expandvars(self.data.dir))
        unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", d)
        if unset:
            raise SourceFileError(self.origin or self.name, "data.dir",
                                  f"{self.data.dir!r} uses ${unset[0]}, which is not set in the environment")
        if d.startswith(BUILTIN_PREFIX) or "://" in d or os.path.isabs(d):
            return d
        base = Path(self.origin).parent if self.origin else Path.cwd()
        return str((base / d).resolve())

    def locator_points_paths(self) -> list[str]:
        """``locator_points`` resolved like ``data.dir``; a path naming an unset variable raises SourceFileError."""
        out = []
        for i, raw in enumerate(self.locator_points):
            d = os.path.expanduser(os.path.expandvars(raw))
            unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", d)
            if unset:
                raise SourceFileError(self.origin or self.name, f"locator_points[{i}]",
                                      f"{raw!r} uses ${unset[0]}, which is not set in the environment")
            if not ("://" in d or os.path.isabs(d)):
                base = Path(self.origin).parent if self.origin else Path.cwd()
                d = str((base / d).resolve())
            out.append(d)
        return out

    def step_paths(self) -> dict[str, str]:
        """Every field path this file names, keyed by the setting that names it (for checks against data)."""
        out: dict[str, str] = {"cameras.primary": self.cameras.primary, "instruction.path": self.instruction.path}
        for i, p in enumerate(self.cameras.extra):
            out[f"cameras.extra[{i}]"] = p
        if self.cameras.wrist:
            out["cameras.wrist"] = self.cameras.wrist
        if self.cameras.depth:
            out["cameras.depth"] = self.cameras.depth
        for i, seg in enumerate(self.action.arm):
            out[f"action.arm[{i}].path"] = seg.path
        out["action.gripper.path"] = self.action.gripper.path
        for i, k in enumerate(self.state.keys):
            out[f"state.keys[{i}]"] = k
        if self.state.eef_position:
            out["state.eef_position.path"] = self.state.eef_position.path
        return out

    def fingerprint(self, with_location: bool = True) -> str:
        """A hash of everything that changes what is read (used in cache keys and config hashes).

        ``with_location=False`` leaves out where the data lies (for hashes that stand with a digest of the data
        itself, so the same data copied to a bucket keeps its hash)."""
        import hashlib
        import json

        body = self.model_dump(mode="json")
        body["data"]["dir"] = self.data_dir() if with_location else None
        if body["data"].get("format") == "rlds":  # the default: RLDS sources keep the hashes they had before
            body["data"].pop("format")
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _known_fields(model: type[BaseModel]) -> list[str]:
    return sorted(model.model_fields)


def _loc_model(loc: tuple) -> type[BaseModel]:
    """The model class that owns the setting at `loc` (for listing the keys that exist)."""
    model: type[BaseModel] = SourceConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            break
        ann = field.annotation
        inner = getattr(ann, "__args__", None) or (ann,)
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            break
        model = nxt
    return model


def load_source(path: str | os.PathLike) -> SourceConfig:
    """Read and check a source file; errors name the file, the setting and the keys that exist."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise SourceFileError(path, "file", "no such source file") from None
    except yaml.YAMLError as e:
        raise SourceFileError(path, "file", f"not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise SourceFileError(path, "file", "the top level must be a mapping of settings")
    try:
        cfg = SourceConfig.model_validate(raw)
    except ValidationError as e:
        errors = e.errors()
        # A typo in a required key shows up twice: the key "missing" and the typo "extra". Name the typo.
        err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        loc = err["loc"]
        setting = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            raise SourceFileError(path, setting, "unknown setting", _known_fields(_loc_model(loc))) from None
        if err["type"] == "missing":
            raise SourceFileError(path, setting, "required setting is missing") from None
        raise SourceFileError(path, setting, err["msg"]) from None
    return cfg.model_copy(update={"origin": os.path.abspath(path)})


def builtin_sources_dir() -> Path:
    """The repository's sources/ folder (one YAML file per known robot source)."""
    env = os.environ.get("ARMDATA_SOURCES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "sources"


def resolve_source(name_or_path: str) -> SourceConfig:
    """A path to a source file, or the name of one in sources/ (``bridge_debug``)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return load_source(p)
    cand = builtin_sources_dir() / f"{name_or_path}.yaml"
    if cand.exists():
        return load_source(cand)
    known = sorted(q.stem for q in builtin_sources_dir().glob("*.yaml"))
    raise SourceFileError(name_or_path, "source", "no such file or known source", known)
