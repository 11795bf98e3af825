"""Look inside an unknown RLDS dataset, draft a source file for it, and check a source file against its data.

Three uses, one module (the ``armdata sources`` command is a thin wrapper):

- :func:`inspect_builder` reads a TFDS builder directory's feature spec and a few episodes, and returns one
  :class:`FieldInfo` per leaf field (path, kind, shape, dtype, an example value) with camera statistics that
  flag black and constant cameras (Bridge pads missing cameras with black frames).
- :func:`draft_source` turns an inspection into a draft source file: best guesses for the primary camera, the
  instruction field and the action mapping, each marked with a ``# guess:`` comment and listed in
  ``unconfirmed`` so that nobody mistakes a guess for a checked fact.
- :func:`validate_source` checks a source file against its data (keys exist, shapes and action widths,
  instruction present and non-empty, cameras not black) and reads a few episodes through the real reader and
  standardizer; it returns a :class:`ValidationReport` instead of raising, so a person sees every problem at once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from armdata.pipeline.sources.rlds import get_path
from armdata.schemas.errors import ArmdataError, RecordError, SourceFileError
from armdata.schemas.source import SourceConfig, load_source

logger = logging.getLogger(__name__)

# A camera whose sampled frames are all at most this bright on average (and this flat) is black: JPEG leaves
# a little noise on a black frame, so exact zero is too strict.
BLACK_MEAN_MAX = 3.0
# A frame whose pixel standard deviation is below this carries no picture (a constant fill).
CONSTANT_STD_MAX = 2.0

_WRIST_WORDS = ("wrist", "hand", "gripper", "eye_in_hand", "ego")
_PRIMARY_WORDS = ("image", "image_0", "rgb", "agentview", "front", "static", "primary", "main", "exterior")
_INSTRUCTION_WORDS = ("language_instruction", "natural_language_instruction", "instruction", "language", "task")


@dataclass(frozen=True)
class CameraStats:
    """Pixel statistics of one camera over the sampled frames."""

    frames: int
    mean: float
    std: float
    black: bool
    constant: bool
    frozen: bool  # every sampled frame identical within an episode

    def flags(self) -> list[str]:
        out = []
        if self.black:
            out.append("BLACK")
        elif self.constant:
            out.append("CONSTANT")
        if self.frozen and not (self.black or self.constant):
            out.append("FROZEN")
        return out


@dataclass(frozen=True)
class FieldInfo:
    """One leaf field of an RLDS dataset.

    path: '/' path as source files write it (step fields without ``steps/``; ``episode_metadata/...``)
    level: "step" or "episode"
    kind: the tfds feature class (Image, Tensor, Text, Scalar, ...)
    """

    path: str
    level: str
    kind: str
    shape: tuple
    dtype: str
    description: str = ""
    example: str = ""
    camera: CameraStats | None = None
    values: np.ndarray | None = field(default=None, repr=False)  # stacked sampled values (numeric fields)
    texts: tuple[str, ...] = ()  # sampled values of string fields, one per episode (first non-empty)

    @property
    def is_image(self) -> bool:
        return self.kind == "Image" and len(self.shape) == 3 and self.shape[-1] == 3

    @property
    def is_text(self) -> bool:
        return self.kind == "Text" or self.dtype in ("string", "str", "object", "bytes")

    @property
    def width(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Inspection:
    builder_dir: str
    name: str
    version: str
    split: str
    splits: dict[str, int]
    episodes_read: int
    steps_read: int
    fields: list[FieldInfo]
    format: str = "rlds"  # "lerobot" for a LeRobot dataset folder (version is then its codebase_version)
    fps: float | None = None  # LeRobot records its frame rate; RLDS does not

    def field(self, path: str) -> FieldInfo | None:
        return next((f for f in self.fields if f.path == path), None)

    def render(self) -> str:
        """The feature tree as text: one line per field, cameras flagged."""
        lines = [
            f"dataset {self.name} {self.version} at {self.builder_dir}",
            "splits: " + ", ".join(f"{k} ({v} episodes)" for k, v in self.splits.items()),
            f"sampled {self.episodes_read} episodes, {self.steps_read} steps of split {self.split!r}",
            "",
        ]
        width = max((len(f.path) for f in self.fields), default=10)
        for level in ("episode", "step"):
            group = [f for f in self.fields if f.level == level]
            if not group:
                continue
            lines.append("episode fields:" if level == "episode" else "step fields:")
            for f in group:
                shape = "(" + ", ".join(str(d) for d in f.shape) + ")" if f.shape else "()"
                line = f"  {f.path:<{width}}  {f.kind:<7} {shape:<14} {f.dtype:<8} e.g. {f.example}"
                if f.camera is not None:
                    flags = f.camera.flags()
                    line += f"  [mean {f.camera.mean:.1f}, std {f.camera.std:.1f}" + (
                        f"; {' '.join(flags)}]" if flags else "]"
                    )
                lines.append(line)
                if f.description:
                    lines.append(f"  {'':<{width}}  ({f.description})")
        flagged = [f"{f.path}: {' '.join(f.camera.flags())}" for f in self.fields if f.camera and f.camera.flags()]
        if flagged:
            lines += ["", "cameras flagged:"] + [f"  {x}" for x in flagged]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# inspect


def _feature_kind(feat) -> str:
    return type(feat).__name__


def _feature_shape_dtype(feat) -> tuple[tuple, str]:
    shape = tuple(-1 if d is None else int(d) for d in (getattr(feat, "shape", ()) or ()))
    dtype = getattr(feat, "np_dtype", None) or getattr(feat, "dtype", None)
    name = getattr(dtype, "name", None) or str(dtype)
    if name in ("str", "object", "bytes_", "str_") or "string" in name:
        name = "string"
    return shape, name


def _example_text(v: Any, kind: str) -> str:
    if isinstance(v, bytes):
        s = v.decode("utf-8", errors="replace")
        return repr(s[:60] + ("..." if len(s) > 60 else ""))
    a = np.asarray(v)
    if a.dtype.kind in "SO":
        return _example_text(a.reshape(-1)[0] if a.size else b"", kind)
    if kind == "Image" or a.ndim >= 2:
        return f"<{a.dtype} {'x'.join(map(str, a.shape))} mean {float(a.mean()):.1f}>"
    if a.ndim == 0:
        return repr(a.item())
    flat = a.reshape(-1)
    body = ", ".join(f"{x:.4g}" if a.dtype.kind == "f" else str(x) for x in flat[:8])
    return f"[{body}{', ...' if flat.size > 8 else ''}]"


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    a = np.asarray(v)
    if a.dtype.kind in "SO" and a.size:
        return _text(a.reshape(-1)[0])
    return str(v)


def camera_stats(frames_per_episode: list[np.ndarray]) -> CameraStats:
    """Flags a camera from its sampled frames ([T, H, W, 3] per episode)."""
    frames = [f for f in frames_per_episode if f.size]
    if not frames:
        return CameraStats(0, 0.0, 0.0, False, False, False)
    allf = np.concatenate([f.reshape(f.shape[0], -1).astype(np.float32) for f in frames], axis=0)
    mean = float(allf.mean())
    per_frame_std = allf.std(axis=1)
    black = mean <= BLACK_MEAN_MAX and float(per_frame_std.max()) <= CONSTANT_STD_MAX
    constant = bool(per_frame_std.max() <= CONSTANT_STD_MAX)
    frozen = all(f.shape[0] > 1 and bool((f == f[:1]).all()) for f in frames)
    return CameraStats(int(allf.shape[0]), mean, float(allf.std()), bool(black), constant, frozen)


def _pick_split(builder, split: str | None) -> str:
    splits = list(builder.info.splits.keys())
    if split is not None:
        if split not in splits:
            raise ArmdataError(f"unknown split {split!r}; splits that exist: {', '.join(sorted(splits))}")
        return split
    return "train" if "train" in splits else sorted(splits)[0]


def inspect_builder(path: str | os.PathLike, episodes: int = 3, split: str | None = None) -> Inspection:
    """Feature tree and statistics of the TFDS builder dir at `path`, from its first `episodes` episodes."""
    from armdata.pipeline.sources.rlds import flatten_features, iter_records, read_builder_dir

    path = str(path)
    from armdata.pipeline.sources.lerobot import is_lerobot_dir

    if is_lerobot_dir(path):
        return inspect_lerobot(path, episodes=episodes)
    try:
        builder = read_builder_dir(path)
    except Exception as e:  # tfds raises several types for a missing or unreadable dir
        raise ArmdataError(f"cannot open a TFDS builder directory at {path!r}: {type(e).__name__}: {e}") from None
    split = _pick_split(builder, split)
    features = builder.info.features
    leaves = flatten_features(features)

    sampled: list[dict] = []
    for shard in builder.info.splits[split].filepaths:
        for _, rec in iter_records(shard):
            if len(sampled) >= episodes:
                break
            sampled.append(features.deserialize_example_np(rec))
        if len(sampled) >= episodes:
            break

    logger.debug("inspecting %s split %s: sampled %d episodes", path, split, len(sampled))

    def step_values(ep: dict, sub: str) -> list:
        steps = ep["steps"]
        return [get_path(steps[i], sub) for i in range(len(steps))]

    def meta_value(ep: dict, sub: str):
        return get_path(ep, sub)

    fields: list[FieldInfo] = []
    for full, feat in leaves.items():
        kind = _feature_kind(feat)
        shape, dtype = _feature_shape_dtype(feat)
        desc = getattr(feat, "doc", None)
        desc = getattr(desc, "desc", "") or ""
        if full.startswith("steps/"):
            sub, level = full[len("steps/"):], "step"
            per_ep = [step_values(ep, sub) for ep in sampled]
        else:
            sub, level = full, "episode"
            per_ep = [[meta_value(ep, sub)] for ep in sampled]
        first = next((vals[0] for vals in per_ep if vals), None)
        example = _example_text(first, kind) if first is not None else "(no steps sampled)"
        info: dict[str, Any] = {}
        if dtype == "string" or kind == "Text":
            info["texts"] = tuple(
                next((t for t in (_text(v) for v in vals) if t.strip()), "") for vals in per_ep
            )
        elif first is not None:
            arrays = [np.stack([np.asarray(v) for v in vals]) for vals in per_ep if vals]
            if kind == "Image" and shape and shape[-1] == 3:
                info["camera"] = camera_stats(arrays)
            elif np.asarray(first).dtype.kind in "fiub" and np.asarray(first).size <= 64:
                info["values"] = np.concatenate([a.reshape(a.shape[0], -1) for a in arrays], axis=0)
        fields.append(FieldInfo(sub, level, kind, shape, dtype, desc, example, **info))

    fields.sort(key=lambda f: (f.level != "episode", f.path))
    splits = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    return Inspection(
        builder_dir=path,
        name=builder.info.name,
        version=str(builder.info.version),
        split=split,
        splits=splits,
        episodes_read=len(sampled),
        steps_read=sum(len(ep["steps"]) for ep in sampled),
        fields=fields,
    )


# ------------------------------------------------------------------------------------------------------------
# draft


@dataclass
class _Guess:
    value: Any
    why: str


def _score_camera(path: str) -> int:
    name = path.lower().split("/")[-1]
    if any(w in name for w in _WRIST_WORDS):
        return -10
    score = 0
    for i, w in enumerate(_PRIMARY_WORDS):
        if name == w:
            score = max(score, 20 - i)
        elif w in name:
            score = max(score, 10 - i)
    return score


def guess_cameras(insp: Inspection) -> dict[str, _Guess]:
    images = [f for f in insp.fields if f.level == "step" and f.is_image]
    usable = [f for f in images if not (f.camera and (f.camera.black or f.camera.constant))]
    out: dict[str, _Guess] = {}
    if not usable:
        return out
    wrist = [f for f in usable if any(w in f.path.lower().split("/")[-1] for w in _WRIST_WORDS)]
    third = [f for f in usable if f not in wrist] or usable
    primary = max(third, key=lambda f: (_score_camera(f.path), -third.index(f)))
    out["primary"] = _Guess(primary.path, "third-person RGB camera whose name ranks first; not black")
    extra = [f.path for f in third if f is not primary]
    if extra:
        out["extra"] = _Guess(extra, "the other third-person cameras that are not black or constant")
    if wrist:
        out["wrist"] = _Guess(wrist[0].path, "camera named like a wrist/hand camera")
    depth = [f for f in insp.fields if f.level == "step" and "depth" in f.path.lower() and len(f.shape) >= 2]
    if depth:
        out["depth"] = _Guess(depth[0].path, "field named depth; depth_scale unknown (metres assumed)")
    return out


def guess_instruction(insp: Inspection) -> _Guess | None:
    texts = [f for f in insp.fields if f.is_text]

    def rank(f: FieldInfo) -> tuple:
        name = f.path.lower().split("/")[-1]
        word = next((i for i, w in enumerate(_INSTRUCTION_WORDS) if w in name), len(_INSTRUCTION_WORDS))
        filled = sum(1 for t in f.texts if t.strip())
        return (word < len(_INSTRUCTION_WORDS), filled, -word, f.level == "step")

    cands = [f for f in texts if any(t.strip() for t in f.texts)]
    if not cands:
        return None
    best = max(cands, key=rank)
    where = "episode metadata" if best.level == "episode" else "step field"
    return _Guess(best.path, f"{where} with text in {sum(1 for t in best.texts if t.strip())} sampled episodes")


_XYZ_WORDS = ("world_vector", "xyz", "translation", "position", "pos", "delta_pos")
_ROT_WORDS = ("rotation_delta", "rotation", "axis_angle", "rpy", "orientation", "euler", "rot")
_GRIP_WORDS = ("gripper", "grip", "close", "open")


def _gripper_mode(values: np.ndarray | None) -> tuple[str, float, float, str]:
    """(mode, open_value, closed_value, why) from sampled gripper values."""
    if values is None or values.size == 0:
        return "absolute", 1.0, 0.0, "no values sampled; assumed absolute with 1 = open"
    v = values.reshape(-1)
    v = v[np.isfinite(v)]
    lo, hi = float(v.min()), float(v.max())
    uniq = np.unique(np.round(v, 3))
    if lo < -0.5 and set(uniq.tolist()) <= {-1.0, 0.0, 1.0} and (uniq == 0).any():
        return "relative", 1.0, 0.0, "values in {-1, 0, 1} with zeros between: relative commands, +1 = close assumed"
    if lo < -0.5:
        return "absolute", 1.0, -1.0, f"values span [{lo:.3g}, {hi:.3g}]; assumed 1 = open, -1 = closed"
    return "absolute", 1.0, 0.0, f"values span [{lo:.3g}, {hi:.3g}]; assumed 1 = open, 0 = closed"


def guess_action(insp: Inspection) -> tuple[dict[str, Any], list[str]] | None:
    """A draft ``action:`` mapping and the reasons for each guess."""
    acts = [f for f in insp.fields if f.level == "step" and (f.path == "action" or f.path.startswith("action/"))]
    numeric = [f for f in acts if f.dtype not in ("string", "bool") and f.kind != "Image"]
    if not numeric:
        return None
    why: list[str] = []
    flat = next((f for f in numeric if f.path == "action"), None)
    if flat is not None and flat.width >= 7:
        w = flat.width
        gvals = flat.values[:, w - 1] if flat.values is not None else None
        mode, ov, cv, gwhy = _gripper_mode(gvals)
        arm = [{"path": "action", "index": list(range(6))}]
        why.append(f"action.arm: flat action of width {w}; first 6 values taken as x y z roll pitch yaw deltas")
        gripper = {"path": "action", "index": w - 1, "mode": mode, "open_value": ov, "closed_value": cv}
        why.append(f"action.gripper: last value of action ({gwhy})")
        return {"arm": arm, "gripper": gripper, "raw_width": {"action": w}}, why

    def find(words, exclude=()) -> FieldInfo | None:
        for w in words:
            for f in numeric:
                name = f.path.lower().split("action/", 1)[-1]
                if w in name and f not in exclude:
                    return f
        return None

    grip = find(_GRIP_WORDS)
    xyz = find(_XYZ_WORDS, exclude=(grip,))
    rot = find(_ROT_WORDS, exclude=(grip, xyz))
    if xyz is None or grip is None:
        return None
    arm: list[dict[str, Any]] = [{"path": xyz.path} if xyz.width == 3 else {"path": xyz.path, "index": [0, 1, 2]}]
    why.append(f"action.arm[0]: {xyz.path} (width {xyz.width}) as x y z")
    if rot is not None:
        arm.append({"path": rot.path} if rot.width == 3 else {"path": rot.path, "index": [0, 1, 2]})
        why.append(f"action.arm[1]: {rot.path} (width {rot.width}) as roll pitch yaw")
    else:
        why.append("action.arm: no rotation field found; the draft cannot be complete (6 arm values needed)")
    gvals = grip.values[:, 0] if grip.values is not None else None
    mode, ov, cv, gwhy = _gripper_mode(gvals)
    if "closedness" in grip.path or "close" in grip.path.split("/")[-1]:
        if mode == "absolute":
            ov, cv = 0.0, 1.0
            gwhy += "; the name says 'close', so 1 = closed"
    gripper: dict[str, Any] = {"path": grip.path, "index": 0, "mode": mode}
    if mode == "absolute":
        gripper.update(open_value=ov, closed_value=cv)
    else:
        gripper.update(close_command_sign=1.0)
    why.append(f"action.gripper: {grip.path} ({gwhy})")
    raw_width = {f.path: f.width for f in (xyz, rot, grip) if f is not None}
    return {"arm": arm, "gripper": gripper, "raw_width": raw_width}, why


def guess_state(insp: Inspection) -> _Guess | None:
    cands = [
        f for f in insp.fields
        if f.level == "step" and f.path.startswith(("observation/", "observation.")) and f.kind != "Image" and f.dtype.startswith("float")
        and any(w in f.path.lower() for w in ("state", "pose", "proprio", "eef", "joint", "position"))
        and len(f.shape) == 1
    ]
    if not cands:
        return None
    return _Guess([f.path for f in cands], "float observation vectors named like state/pose/proprio")


def draft_source(insp: Inspection, name: str | None = None, data_dir: str | None = None) -> str:
    """A draft source file (YAML text) for an inspected dataset; every guess is commented and listed as unconfirmed."""
    name = name or "".join(c if c.isalnum() or c in "_-" else "_" for c in insp.name) or "new_source"
    unconfirmed: list[str] = []
    lines: list[str] = [
        f"# Draft source file for {insp.name} {insp.version}, written by `armdata sources inspect`.",
        "# Every '# guess:' below was inferred from field names and a few episodes. Check each against the dataset's",
        "# documentation, then remove it from `unconfirmed` and run `armdata sources validate` on this file.",
        f"name: {name}",
        f"description: {_q(f'{insp.name} {insp.version} (draft)')}",
        "data:",
        f"  dir: {_q(data_dir or insp.builder_dir)}",
        f"  split: {insp.split}",
    ]
    if insp.format != "rlds":
        lines.append(f"  format: {insp.format}")

    def guess_line(key: str, value: Any, why: str, indent: str, setting: str) -> None:
        lines.append(f"{indent}{key}: {_flow(value)}  # guess: {why}")
        unconfirmed.append(f"{setting}: {why}")

    cams = guess_cameras(insp)
    lines.append("cameras:")
    if "primary" not in cams:
        lines.append("  primary: REPLACE_ME  # guess: no usable camera found (all black, constant or missing)")
        unconfirmed.append("cameras.primary: no usable camera found")
    for key in ("primary", "extra", "wrist", "depth"):
        if key in cams:
            guess_line(key, cams[key].value, cams[key].why, "  ", f"cameras.{key}")
    black = [f.path for f in insp.fields if f.camera and (f.camera.black or f.camera.constant)]
    if black:
        lines.append(f"  # left out, black or constant in the sampled episodes: {', '.join(black)}")

    instr = guess_instruction(insp)
    lines.append("instruction:")
    if instr is None:
        lines.append("  path: REPLACE_ME  # guess: no non-empty text field found")
        unconfirmed.append("instruction.path: no non-empty text field found")
    else:
        guess_line("path", instr.value, instr.why, "  ", "instruction.path")

    act = guess_action(insp)
    lines.append("action:")
    if act is None:
        lines += [
            "  arm: [{path: REPLACE_ME}]  # guess: no action field recognised",
            "  gripper: {path: REPLACE_ME}  # guess: no gripper field recognised",
        ]
        unconfirmed.append("action: no action field recognised")
    else:
        mapping, whys = act
        lines.append("  arm:")
        for i, seg in enumerate(mapping["arm"]):
            why = next((w for w in whys if w.startswith(f"action.arm[{i}]") or w.startswith("action.arm:")), "")
            lines.append(f"    - {_flow(seg)}  # guess: {why.split(': ', 1)[-1]}")
        unconfirmed += [w for w in whys if w.startswith("action.arm")]
        gwhy = next(w for w in whys if w.startswith("action.gripper"))
        lines.append(f"  gripper: {_flow(mapping['gripper'])}  # guess: {gwhy.split(': ', 1)[-1]}")
        unconfirmed.append(gwhy)
        lines.append(f"  raw_width: {_flow(mapping['raw_width'])}  # widths as stored in the data")

    state = guess_state(insp)
    if state is not None:
        lines.append("state:")
        guess_line("keys", state.value, state.why, "  ", "state.keys")
    if insp.fps:
        lines.append(f"control_hz: {insp.fps:g}  # the dataset's recorded fps")
    else:
        lines.append("# control_hz: unknown  # guess: not in the data; look it up (Open X-Embodiment dataset table)")
        unconfirmed.append("control_hz: not in the data")
    lines.append("unconfirmed:")
    lines += [f"  - {_q(u)}" for u in unconfirmed]
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    """A YAML scalar, quoted (JSON style is valid YAML)."""
    import json

    return json.dumps(s)


def _flow(v: Any) -> str:
    """A value in YAML flow style on one line."""
    if isinstance(v, str):
        return _q(v)
    return yaml.safe_dump(v, default_flow_style=True, width=10_000, sort_keys=False).strip()


def write_draft(text: str, path: str | os.PathLike) -> Path:
    """Atomic write of a draft source file (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------------------
# validate


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn", "fail"
    detail: str


@dataclass
class ValidationReport:
    source_path: str
    source_name: str | None = None
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def render(self) -> str:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        lines = [f"validate {self.source_path}" + (f" (source {self.source_name})" if self.source_name else "")]
        lines += [f"  [{mark[c.status]}] {c.name}: {c.detail}" for c in self.checks]
        n_fail, n_warn = len(self.failures), sum(c.status == "warn" for c in self.checks)
        lines.append(f"result: {'PASS' if self.ok else 'FAIL'} ({n_fail} failed, {n_warn} warnings)")
        return "\n".join(lines)


def _check_shapes(cfg: SourceConfig, insp: Inspection, report: ValidationReport) -> None:
    """Static checks against the feature spec: camera kinds, instruction dtype, action widths and indices."""
    for setting, path in cfg.step_paths().items():
        if not setting.startswith("cameras.") or setting == "cameras.depth":
            continue
        f = insp.field(path)
        if f is not None and not f.is_image:
            report.add(f"{setting} kind", "fail", f"{path} is {f.kind} {f.shape} {f.dtype}, not an RGB image [H, W, 3]")
    f = insp.field(cfg.instruction.path)
    if f is not None and not f.is_text:
        report.add("instruction.path kind", "fail", f"{cfg.instruction.path} is {f.kind} {f.dtype}, not text")

    def width_of(path: str) -> int | None:
        fi = insp.field(path)
        return fi.width if fi is not None else None

    for path, want in cfg.action.raw_width.items():
        got = width_of(path)
        if got is None:
            report.add("action.raw_width", "fail", f"{path}: no such field in the data")
        elif got != want:
            report.add("action.raw_width", "fail", f"{path}: the data has width {got}, the file says {want}")
    total = 0
    for i, seg in enumerate(cfg.action.arm):
        w = width_of(seg.path)
        if w is None:
            continue
        idx = seg.index if seg.index is not None else list(range(w))
        bad = [j for j in idx if not -w <= j < w]
        if bad:
            report.add(f"action.arm[{i}].index", "fail", f"{bad} out of range for {seg.path} of width {w}")
        total += len(idx)
    if total and total != 6:
        report.add("action.arm width", "fail", f"the arm segments give {total} values; x y z roll pitch yaw need 6")
    g = cfg.action.gripper
    w = width_of(g.path)
    if w is not None:
        if g.index is None and w != 1:
            report.add("action.gripper.index", "fail", f"{g.path} has width {w}; give an index")
        elif g.index is not None and not -w <= g.index < w:
            report.add("action.gripper.index", "fail", f"{g.index} out of range for {g.path} of width {w}")
    if not any(c.status == "fail" for c in report.checks if c.name.startswith(("action", "cameras", "instruction"))):
        report.add("shapes", "ok", f"action arm gives 6 values, gripper 1; widths {dict(cfg.action.raw_width)} match")


def _check_gripper_finding(cfg: SourceConfig, report: ValidationReport) -> None:
    """How traces will find the end effector: calibration, points tables + fit, or a hint; a warning (with the
    recipe) where the file gives none, or names points tables that cannot be read or has no end-effector state."""
    from armdata.pipeline import fs

    eef = cfg.state.eef_position is not None
    recipe = (f"`armdata locate --source {cfg.name} --out points.jsonl --set trace.pointer_model=...` then "
              f"`armdata build --source {cfg.name} --points points.jsonl`, or locator_points / calibration / "
              f"locator_hint in the source file")
    if cfg.calibration is not None and eef:
        report.add("gripper", "ok", "projection of state.eef_position through the calibration")
        return
    if cfg.locator_points:
        if not eef:
            report.add("gripper", "warn", "locator_points need state.eef_position to fit the camera; " + recipe)
            return
        try:
            paths = cfg.locator_points_paths()
        except SourceFileError as e:
            report.add("gripper", "warn", f"{e}; until it is set: {recipe}")
            return
        missing = [p for p in paths if not fs.exists(p)]
        if missing:
            report.add("gripper", "warn", f"points table(s) not found: {', '.join(missing)}; {recipe}")
        else:
            report.add("gripper", "ok", f"camera fitted to {len(paths)} points table(s) (locator fit)")
        return
    if cfg.locator_hint is not None:
        report.add("gripper", "ok", "locator_hint on the first frame, then the tracker")
        return
    report.add("gripper", "warn", "no way to find the end effector (no calibration, locator_points or "
               f"locator_hint): traces need --points or a pointer; {recipe}")


def validate_source(path: str | os.PathLike, episodes: int = 3) -> ValidationReport:
    """Check a source file against its data; never raises on bad input, every problem is a failed check.

    Steps: the file parses (typos name the key and the keys that exist); the data dir and split exist; every
    field path exists; shapes and action widths match; `episodes` episodes read and standardize (non-finite
    actions, empty episodes, ...); each has a non-empty instruction; no named camera is black or constant.
    """
    from armdata.pipeline.sources.rlds import resolve_data_dir
    from armdata.pipeline.sources.standardize import standardize

    report = ValidationReport(str(path))
    try:
        cfg = load_source(path)
    except SourceFileError as e:
        report.add("source file", "fail", str(e))
        return report
    report.source_name = cfg.name
    report.add("source file", "ok", f"schema valid; data {cfg.data_dir()} split {cfg.data.split}")
    if cfg.unconfirmed:
        report.add("unconfirmed", "warn", f"{len(cfg.unconfirmed)} settings not confirmed against real data:"
                   + "".join(f"\n           - {u}" for u in cfg.unconfirmed))

    _check_gripper_finding(cfg, report)

    if not _open_and_check(cfg, report):
        return report

    try:
        insp = inspect_builder(resolve_data_dir(cfg), episodes=episodes, split=cfg.data.split)
    except ArmdataError as e:
        report.add("inspect", "fail", str(e))
        return report
    _check_shapes(cfg, insp, report)

    cams = {"cameras.primary": cfg.cameras.primary}
    cams.update({f"cameras.extra[{i}]": p for i, p in enumerate(cfg.cameras.extra)})
    if cfg.cameras.wrist:
        cams["cameras.wrist"] = cfg.cameras.wrist
    for setting, cam in cams.items():
        f = insp.field(cam)
        if f is None or f.camera is None:
            continue
        flags = f.camera.flags()
        if f.camera.black or f.camera.constant:
            report.add(setting, "fail", f"{cam} is {' '.join(flags).lower()} in {f.camera.frames} sampled frames")
        elif flags:
            report.add(setting, "warn", f"{cam} is {' '.join(flags).lower()} in the sampled episodes")
        else:
            report.add(setting, "ok", f"{cam}: {f.shape}, mean {f.camera.mean:.1f}, std {f.camera.std:.1f}")

    n_ok, errors, empty_instr, gripper_bad = 0, [], [], []
    from armdata.pipeline.sources.read import read_episodes_or_errors

    for item in read_episodes_or_errors(cfg, limit=episodes):
        if isinstance(item, RecordError):
            errors.append(item)
            continue
        try:
            std = standardize(item, cfg)
        except RecordError as e:
            errors.append(e)
            continue
        n_ok += 1
        if not std.instruction:
            empty_instr.append(item.episode_key)
        g = std.actions[:, 6]
        if (g < 0).any() or (g > 1).any():
            gripper_bad.append(item.episode_key)
    for e in errors:
        report.add("episode", "fail", str(e))
    if n_ok:
        report.add("read + standardize", "ok" if not errors else "fail",
                   f"{n_ok} of {n_ok + len(errors)} sampled episodes standardized")
    elif not errors:
        report.add("read + standardize", "fail", "the split holds no episodes")
    if empty_instr:
        report.add("instruction", "fail", f"empty instruction ({cfg.instruction.path}) in episodes {', '.join(empty_instr)}")
    elif n_ok:
        report.add("instruction", "ok", f"non-empty in all {n_ok} standardized episodes")
    if gripper_bad:
        report.add("gripper", "fail", f"canonical gripper outside [0, 1] in {', '.join(gripper_bad)}")
    return report



def _open_and_check(cfg: SourceConfig, report: ValidationReport) -> bool:
    """The data opens and every field path the file names exists in it (RLDS or LeRobot); False after a failure."""
    from armdata.pipeline.sources.rlds import check_source_against_features, open_builder

    if cfg.data.format == "lerobot":
        from armdata.pipeline.sources.lerobot import LeRobotEpisodeReader

        try:
            ds = LeRobotEpisodeReader(cfg).check()
        except SourceFileError as e:
            report.add("field paths", "fail", str(e))
            return False
        except ArmdataError as e:
            report.add("data", "fail", str(e))
            return False
        report.add("data", "ok", f"LeRobot {ds.version} dataset {ds.name} ({len(ds.episodes)} episodes, {ds.fps:g} fps)")
        report.add("field paths", "ok", f"all {len(cfg.step_paths())} field paths exist")
        return True
    try:
        builder = open_builder(cfg)
    except ArmdataError as e:
        report.add("data", "fail", str(e))
        return False
    report.add("data", "ok", f"{builder.info.name} {builder.info.version}, split {cfg.data.split} "
               f"({builder.info.splits[cfg.data.split].num_examples} episodes)")
    try:
        check_source_against_features(cfg, builder.info.features)
    except SourceFileError as e:
        report.add("field paths", "fail", str(e))
        return False
    report.add("field paths", "ok", f"all {len(cfg.step_paths())} field paths exist")
    return True


def inspect_lerobot(path: str | os.PathLike, episodes: int = 3) -> Inspection:
    """Feature tree and statistics of a LeRobot dataset folder (v2.1 or v3.0), from its first `episodes` episodes.

    Field paths are the feature names; ``task_index`` is listed as a text field holding the episode's task (the
    instruction path a LeRobot source file names); video features are cameras with their decoded pixel statistics.
    """
    from armdata.pipeline.sources.lerobot import (
        FRAME_COLUMNS,
        TASK_PATH,
        LeRobotDataset,
        LeRobotEpisodeReader,
        column_array,
        episode_key,
    )

    ds = LeRobotDataset(path)
    probe = SourceConfig.model_validate({
        "name": "inspect", "data": {"dir": str(Path(path).resolve()), "format": "lerobot"},
        "cameras": {"primary": (ds.video_keys or ["?"])[0]}, "instruction": {"path": TASK_PATH},
        "action": {"arm": [], "gripper": {"path": TASK_PATH}},
    })
    reader = LeRobotEpisodeReader(probe)
    sampled = ds.episodes[:episodes]
    tables, frames = [], {k: [] for k in ds.video_keys + ds.image_keys}
    for ref in sampled:
        key = episode_key(ref.index)
        table = reader._episode_rows(ref, key)
        tables.append(table)
        ts = column_array(table, "timestamp")
        for cam in frames:
            frames[cam].append(reader._frames(ref, cam, ts, key, table))
    fields: list[FieldInfo] = []
    for name, feat in ds.features.items():
        if name in FRAME_COLUMNS and name != TASK_PATH:
            continue
        shape, dtype = tuple(feat.get("shape") or ()), str(feat.get("dtype"))
        if name in frames:
            f0 = frames[name][0][0] if frames[name] else None
            example = f"image {f0.shape}" if f0 is not None else "(no episodes)"
            fields.append(FieldInfo(name, "step", "Image", shape, "uint8", str(feat.get("dtype")), example,
                                    camera=camera_stats(frames[name]) if frames[name] else None))
        elif name == TASK_PATH:
            texts = tuple(ds.tasks.get(int(column_array(t, TASK_PATH)[0]), "") for t in tables)
            fields.append(FieldInfo(name, "step", "Text", (), dtype, "the episode's task (meta/tasks)",
                                    repr(texts[0]) if texts else "", texts=texts))
        elif dtype == "string":
            texts = tuple(next((str(v) for v in column_array(t, name) if str(v).strip()), "") for t in tables)
            fields.append(FieldInfo(name, "step", "Text", shape, dtype, "", repr(texts[0]) if texts else "",
                                    texts=texts))
        else:
            vals = [column_array(t, name) for t in tables]
            info: dict[str, Any] = {}
            if vals and int(np.prod(shape or (1,))) <= 64:
                info["values"] = np.concatenate([v.reshape(v.shape[0], -1) for v in vals], axis=0)
            example = _example_text(vals[0][0], "Tensor") if vals and len(vals[0]) else ""
            fields.append(FieldInfo(name, "step", "Tensor", shape, dtype, "", example, **info))
    fields.sort(key=lambda f: f.path)
    return Inspection(builder_dir=str(path), name=ds.name, version=ds.version, split="train",
                      splits={"train": len(ds.episodes)}, episodes_read=len(sampled),
                      steps_read=sum(t.num_rows for t in tables), fields=fields, format="lerobot", fps=ds.fps)
