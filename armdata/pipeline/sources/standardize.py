"""Apply a source file to an Episode: canonical 7-D actions, primary camera, clean instruction.

Canonical action: ``[x, y, z, roll, pitch, yaw, gripper]``, deltas in the robot's frame, gripper 1 = open and
0 = closed (absolute). The action at step t takes the robot from step t to t+1.
"""

from __future__ import annotations

import re

import numpy as np

from armdata.schemas.errors import RecordError
from armdata.schemas.records import Episode, StandardEpisode
from armdata.schemas.source import ActionSegment, Gripper, SourceConfig

_WS = re.compile(r"\s+")


def clean_instruction(text: str) -> str:
    """Collapse whitespace, strip, drop a trailing NUL padding (some RLDS writers pad strings)."""
    text = text.replace("\x00", " ")
    return _WS.sub(" ", text).strip()


def _take(ep: Episode, fields: dict[str, np.ndarray], seg: ActionSegment, setting: str) -> np.ndarray:
    """[T, k] float64 values of one segment, sign and scale applied."""
    if seg.path not in fields:
        raise RecordError(ep.source, ep.episode_key, None, seg.path, "missing_field", f"{setting}: field not read")
    raw = np.asarray(fields[seg.path])
    if raw.dtype.kind not in "fiub":
        raise RecordError(ep.source, ep.episode_key, None, seg.path, "bad_dtype", f"{setting}: not numeric ({raw.dtype})")
    raw = raw.reshape(raw.shape[0], -1).astype(np.float64)
    width = raw.shape[1]
    idx = seg.index if seg.index is not None else list(range(width))
    bad = [i for i in idx if not -width <= i < width]
    if bad:
        raise RecordError(
            ep.source, ep.episode_key, None, seg.path, "wrong_width",
            f"{setting}: index {bad} out of range for a field of width {width}",
        )
    vals = raw[:, idx]
    sign = np.asarray(seg.sign, dtype=np.float64)
    if sign.ndim == 1 and sign.shape[0] != len(idx):
        raise RecordError(
            ep.source, ep.episode_key, None, seg.path, "wrong_width",
            f"{setting}: {sign.shape[0]} signs for {len(idx)} values",
        )
    return vals * sign * seg.scale


def _check_width(ep: Episode, source: SourceConfig) -> None:
    for path, width in source.action.raw_width.items():
        arr = ep.actions_raw.get(path)
        if arr is None:
            continue
        got = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
        if got != width:
            raise RecordError(
                ep.source, ep.episode_key, 0, path, "wrong_width",
                f"action field has width {got}, the source file says {width}",
            )


def gripper_to_open(raw: np.ndarray, g: Gripper) -> np.ndarray:
    """Raw gripper values [T] -> canonical absolute opening in [0, 1], 1 = open."""
    if g.mode == "absolute":
        span = g.open_value - g.closed_value
        out = np.clip((raw - g.closed_value) / span, 0.0, 1.0)
    else:
        # Relative commands: +-threshold switches state, anything smaller keeps it. Before the first command the
        # gripper is taken to be in the state opposite to that command (a 'close' first means it was open).
        cmd = raw * np.sign(g.close_command_sign)
        state = np.where(cmd > g.threshold, 0.0, np.where(cmd < -g.threshold, 1.0, np.nan))
        known = np.flatnonzero(~np.isnan(state))
        first = 1.0 if known.size == 0 else 1.0 - state[known[0]]
        cur = first
        out = np.empty_like(raw, dtype=np.float64)
        for t, s in enumerate(state):
            if not np.isnan(s):
                cur = s
            out[t] = cur
    if g.binarize:
        out = (out > 0.5).astype(np.float64)
    return out


def view_names(cameras: list[str]) -> dict[str, str]:
    """Extra-view member names: the camera's last path part (``image_1``), or the whole path with '_' for '/'
    where two cameras share a last part. Never a dot (WebDataset splits member names there)."""
    last = [c.split("/")[-1] for c in cameras]
    return {c: (n if last.count(n) == 1 else c.replace("/", "_")).replace(".", "_") for c, n in zip(cameras, last)}


def standardize(ep: Episode, source: SourceConfig) -> StandardEpisode:
    """Episode -> StandardEpisode per the source file. Raises RecordError naming the episode, step and field."""
    n = ep.num_steps
    if n == 0:
        raise RecordError(ep.source, ep.episode_key, None, "steps", "empty_episode", "the episode has 0 steps")
    _check_width(ep, source)

    arm = np.concatenate(
        [_take(ep, ep.actions_raw, seg, f"action.arm[{i}]") for i, seg in enumerate(source.action.arm)], axis=1
    )
    if arm.shape[1] != 6:
        raise RecordError(
            ep.source, ep.episode_key, None, "action", "wrong_width",
            f"action.arm segments give {arm.shape[1]} values; the canonical arm action has 6 (x y z roll pitch yaw)",
        )
    if source.action.arm_mode == "absolute":
        # Poses -> deltas: the action at t moves from pose t to pose t+1; the last step holds still.
        arm = np.concatenate([np.diff(arm, axis=0), np.zeros((1, 6))], axis=0)
    g = source.action.gripper
    graw = _take(ep, ep.actions_raw, ActionSegment(path=g.path, index=None if g.index is None else [g.index]),
                 "action.gripper")
    if graw.shape[1] != 1:
        raise RecordError(
            ep.source, ep.episode_key, None, g.path, "wrong_width",
            f"action.gripper: field has width {graw.shape[1]}; give an index",
        )
    # Checked on the raw values, before the gripper is clipped into [0, 1] (a -inf would become a valid "closed").
    _check_finite(ep, np.concatenate([arm, graw[:, :1]], axis=1), "raw ")
    actions = np.concatenate([arm, gripper_to_open(graw[:, 0], g)[:, None]], axis=1)
    _check_finite(ep, actions, "")

    primary = ep.frames[source.cameras.primary]
    if primary.shape[0] != n:
        raise RecordError(ep.source, ep.episode_key, None, source.cameras.primary, "wrong_shape",
                          f"{primary.shape[0]} frames for {n} steps")
    names = view_names(source.cameras.extra)
    extra = {names[cam]: ep.frames[cam] for cam in source.cameras.extra}
    extra_jpeg = {names[cam]: ep.jpeg[cam] for cam in source.cameras.extra if cam in ep.jpeg}
    if source.cameras.wrist:
        extra["wrist"] = ep.frames[source.cameras.wrist]
        if source.cameras.wrist in ep.jpeg:
            extra_jpeg["wrist"] = ep.jpeg[source.cameras.wrist]

    instruction = clean_instruction(ep.instruction)
    if source.instruction.lowercase:
        instruction = instruction.lower()
    flags = _quality_flags(ep, source, instruction)

    proprio = None
    if source.state.keys:
        parts = [np.asarray(ep.state[k], dtype=np.float32).reshape(n, -1) for k in source.state.keys]
        proprio = np.concatenate(parts, axis=1)
    eef = None
    if source.state.eef_position:
        eef = _take(ep, ep.state, source.state.eef_position, "state.eef_position").astype(np.float32)
        if eef.shape[1] != 3:
            raise RecordError(ep.source, ep.episode_key, None, source.state.eef_position.path, "wrong_width",
                              f"state.eef_position gives {eef.shape[1]} values, expected 3")
    depth = None
    if source.cameras.depth:
        raw = np.asarray(ep.steps[source.cameras.depth], dtype=np.float32)
        depth = raw.reshape(raw.shape[0], raw.shape[1], raw.shape[2]) * np.float32(source.cameras.depth_scale)

    return StandardEpisode(
        source=ep.source,
        episode_key=ep.episode_key,
        actions=actions.astype(np.float32),
        primary=primary,
        instruction=instruction,
        primary_jpeg=ep.jpeg.get(source.cameras.primary),
        extra_views=extra,
        extra_jpeg=extra_jpeg,
        proprio=proprio,
        eef_position=eef,
        depth_camera=depth,
        control_hz=source.control_hz,
        metadata=ep.metadata,
        source_episode_id=ep.source_episode_id,
        flags=flags,
    )


def _check_finite(ep: Episode, actions: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(actions)
    if bad.any():
        t, d = (int(x) for x in np.argwhere(bad)[0])
        dims = sorted({int(x) for x in np.argwhere(bad)[:, 1]})
        raise RecordError(
            ep.source, ep.episode_key, t, _canonical_field(d), "non_finite_action",
            f"{what}action dimension {d} ({_canonical_field(d)}) is {actions[t, d]} ({int(bad.sum())} non-finite "
            f"values in the episode, dimensions {dims})",
        )


def is_placeholder_instruction(text: str, source: SourceConfig) -> bool:
    """Empty, or one of the source's placeholder texts (lower-cased, whitespace collapsed)."""
    t = clean_instruction(text).lower()
    return not t or t in {clean_instruction(p).lower() for p in source.checks.placeholder_instructions}


def constant_camera(frames: np.ndarray, tolerance: int) -> bool:
    """True when every frame [T, H, W, C] is one colour (max - min of its pixels <= tolerance)."""
    if frames.size == 0:
        return False
    f = frames.reshape(frames.shape[0], -1)
    return bool(((f.max(axis=1).astype(np.int64) - f.min(axis=1)) <= tolerance).all())


def _quality_flags(ep: Episode, source: SourceConfig, instruction: str) -> tuple[str, ...]:
    """Empty or placeholder instruction, one-colour used cameras: a dead letter (skip), a flag (keep-with-flag) or
    a fatal dead letter (fail), per the source file's ``checks``."""
    from armdata.schemas.sample import FLAG_CONSTANT_CAMERA, FLAG_EMPTY_INSTRUCTION

    checks = source.checks
    found: list[tuple[str, str, str, str]] = []  # (policy, flag, field, message)
    if is_placeholder_instruction(instruction, source):
        found.append((checks.empty_instruction, FLAG_EMPTY_INSTRUCTION, source.instruction.path,
                      f"empty instruction or a placeholder: {instruction!r}"))
    cams = [source.cameras.primary, *source.cameras.extra] + ([source.cameras.wrist] if source.cameras.wrist else [])
    for cam in cams:
        frames = ep.frames.get(cam)
        if frames is not None and constant_camera(frames, checks.constant_tolerance):
            value = frames.reshape(-1, frames.shape[-1])[0].tolist()
            found.append((checks.constant_camera, FLAG_CONSTANT_CAMERA, cam,
                          f"camera shows one colour {value} in all {frames.shape[0]} frames"))
    flags: list[str] = []
    for policy, flag, field, message in found:
        if policy == "keep-with-flag":
            flags.append(flag)
            continue
        setting = "empty_instruction" if flag == FLAG_EMPTY_INSTRUCTION else "constant_camera"
        raise RecordError(ep.source, ep.episode_key, None, field, flag,
                          f"{message} (checks.{setting}: {policy})", fatal=policy == "fail")
    return tuple(sorted(set(flags)))


def _canonical_field(dim: int) -> str:
    from armdata.schemas.source import CANONICAL_ACTION

    return f"action[{dim}:{CANONICAL_ACTION[dim]}]"
