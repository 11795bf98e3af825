"""The built-in sample: a small synthetic RLDS dataset rendered from a simple 3D world, no download needed.

A fixed pinhole camera looks obliquely down at a table with a few coloured blocks. A two-finger gripper on an
arm (a tall box going up out of view) picks one block and places it on another block or on one side of the
table. Because everything is rendered from one scene description, the RGB frame, the depth-camera frame, the
end effector's state, the delta actions, the gripper opening and the instruction all agree, and the episode
metadata carries exact ground truth: the pixel of the tracked end-effector point at every step and whether it
is visible. Trace fidelity and depth quality of the real pipeline are measured against that ground truth.

Conventions (shared with ``sources/sample.yaml`` and :func:`sample_calibration`):

- World frame = robot base frame, metres: x forward (away from the robot, towards the camera), y left, z up;
  the table top is the plane z = 0.
- Camera frame: x right, y down, z forward. Pixel (u, v): u = column (x right), v = row (y down); pixel
  centres lie at integer coordinates (OpenCV), so ``cx = (W - 1) / 2``. Depth is the camera-frame z of the
  surface (as a depth camera reports it), not the ray length; 0 where a ray hits nothing.
- The end-effector position (``state[:3]``) IS the tracked point: the centre of the palm's front face, the
  face that looks at the camera. It is a visible point on the gripper body (never the empty space between the
  fingers), it carries a checker corner so that a point tracker can lock onto it, and
  ``gripper_uv == project(state[:3])``.
- State ``[x, y, z, roll, pitch, yaw, gripper_open]``; action ``[dx, dy, dz, droll, dpitch, dyaw, gripper]``
  with ``action[t, :6] = state[t + 1, :6] - state[t, :6]`` (zero at the last step) and ``action[t, 6]`` the
  absolute gripper target (1 = open, 0 = closed).

The renderer is vectorised numpy ray casting: a ray-plane test for the table and a slab test in each box's own
frame for the blocks, palm, fingers and arm, with a z-buffer, Lambert shading and procedural textures attached
to the objects (so optical flow has features that move with them). Every episode is seeded by ``(seed,
index)`` and is bit-for-bit reproducible.
"""

from __future__ import annotations

from armdata.cache import cache_root  # noqa: F401  (re-exported: the sample's cache lives there)

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from armdata.schemas.errors import ArmdataError

logger = logging.getLogger(__name__)

SAMPLE_NAME = "armdata_sample"
SAMPLE_VERSION = "1.0.0"
SAMPLE_SPLIT = "train"
# Steps per second of the scripted motion (a typical tabletop rate); sources/sample.yaml says the same.
CONTROL_HZ = 5.0
DEFAULT_PARAMS: dict[str, int] = {"episodes": 6, "steps": 40, "seed": 0, "height": 128, "width": 160}

# ----------------------------------------------------------------------------------------------------- camera
# The camera sits in front of the table (large x), above it, and looks back towards the robot: the gripper's
# front face (+x) faces it, the fingers open left-right in the image, and the arm leaves the image at the top.
CAMERA_EYE = (1.1, 0.0, 0.65)
CAMERA_TARGET = (0.45, 0.0, 0.05)
# fx = fy = FOCAL_PER_WIDTH * W: about a 51 degree horizontal field of view at any resolution.
FOCAL_PER_WIDTH = 1.05


def _camera_from_base() -> np.ndarray:
    """4x4 look-at extrinsics: base-frame points -> camera frame (x right, y down, z forward)."""
    eye = np.asarray(CAMERA_EYE, dtype=np.float64)
    z = np.asarray(CAMERA_TARGET, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.array([0.0, 0.0, 1.0]))  # right = forward x up (world up is camera -y)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # down
    rot = np.stack([x, y, z])  # rows: camera axes in base coordinates
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = -rot @ eye
    return out


def sample_calibration(height: int = 128, width: int = 160) -> dict:
    """The sample camera: intrinsics (fx, fy, cx, cy, width, height) and the 4x4 ``camera_from_base``.

    The renderer uses exactly these numbers; ``sources/sample.yaml`` repeats them for the default 128x160 size
    (a test checks that the two agree). Pixel centres are at integer coordinates.
    """
    f = FOCAL_PER_WIDTH * width
    return {
        "intrinsics": {
            "fx": float(f),
            "fy": float(f),
            "cx": (width - 1) / 2.0,
            "cy": (height - 1) / 2.0,
            "width": int(width),
            "height": int(height),
        },
        "camera_from_base": _camera_from_base().tolist(),
    }


def _intrinsics(calib: dict) -> tuple[float, float, float, float]:
    k = calib["intrinsics"]
    return float(k["fx"]), float(k["fy"]), float(k["cx"]), float(k["cy"])


def project(points_base: np.ndarray, calib: dict) -> np.ndarray:
    """Pixels (u, v) [N, 2] of base-frame points [N, 3] (pinhole, no distortion); NaN behind the camera."""
    pts = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(calib["camera_from_base"], dtype=np.float64)
    cam = pts @ t[:3, :3].T + t[:3, 3]
    fx, fy, cx, cy = _intrinsics(calib)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(cam[:, 2] > 1e-9, cam[:, 2], np.nan)
        u = fx * cam[:, 0] / z + cx
        v = fy * cam[:, 1] / z + cy
    return np.stack([u, v], axis=1)


def camera_depth(points_base: np.ndarray, calib: dict) -> np.ndarray:
    """Camera-frame z [N] of base-frame points [N, 3] (what a depth camera reports at their pixels)."""
    pts = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(calib["camera_from_base"], dtype=np.float64)
    return pts @ t[2, :3] + t[2, 3]


# ------------------------------------------------------------------------------------------------------ scene
# Part ids in the id buffer. Blocks get BLOCK_ID0 + their index.
MISS_ID, TABLE_ID, PALM_ID, FINGER_L_ID, FINGER_R_ID, ARM_ID, BLOCK_ID0 = -1, 0, 1, 2, 3, 4, 10
GRIPPER_IDS = (PALM_ID, FINGER_L_ID, FINGER_R_ID)

# name -> linear RGB albedo in [0, 1]. The gripper is magenta: no block, nor the table, has red AND blue high.
BLOCK_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.25, 0.85),
    "yellow": (0.92, 0.80, 0.12),
}
GRIPPER_COLOUR = (0.85, 0.15, 0.80)
FINGER_COLOUR = (0.62, 0.10, 0.58)
ARM_COLOUR = (0.55, 0.56, 0.60)
TABLE_COLOUR = (0.62, 0.46, 0.30)
SKY_COLOUR = (0.80, 0.82, 0.85)

# Gripper geometry (metres). The grip frame G is the centre of the palm's bottom face; its x axis points at
# the camera (yaw 0), the fingers open along its y axis and hang down along -z.
PALM_HALF = (0.03, 0.08, 0.035)  # depth (x), width (y), height (z)
FINGER_HALF = (0.015, 0.008, 0.035)  # fingers are 7 cm long
ARM_HALF_XY = 0.022
ARM_LENGTH = 0.8  # its top is above the camera, so always out of view (and in front of it, for culling)
OPEN_GAP = 0.11  # inner gap between the fingers when open
BLOCK_HALF = 0.025  # 5 cm cubes
HOVER_Z = 0.20  # G height while travelling (the carried block clears the others by ~7 cm)
GRASP_Z = 2 * FINGER_HALF[2] + 0.005  # fingertips 5 mm above the table when grasping

LIGHT_DIR = np.array([0.5, -0.3, 1.0]) / np.linalg.norm([0.5, -0.3, 1.0])
AMBIENT, DIFFUSE = 0.42, 0.58


@dataclass(frozen=True)
class Box:
    """An oriented box: centre (m, base frame), yaw about z (rad), half extents (m), albedo, texture kind."""

    part_id: int
    center: tuple[float, float, float]
    yaw: float
    half: tuple[float, float, float]
    albedo: tuple[float, float, float]
    texture: str  # "block" | "palm" | "finger" | "arm"


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def eef_point(grip: np.ndarray, yaw: float) -> np.ndarray:
    """The tracked end-effector point (centre of the palm's camera-facing face) for grip frame `grip`."""
    return np.asarray(grip, dtype=np.float64) + _rot_z(yaw) @ np.array([PALM_HALF[0], 0.0, PALM_HALF[2]])


def grip_from_eef(eef: np.ndarray, yaw: float) -> np.ndarray:
    """Inverse of :func:`eef_point`."""
    return np.asarray(eef, dtype=np.float64) - _rot_z(yaw) @ np.array([PALM_HALF[0], 0.0, PALM_HALF[2]])


def gripper_boxes(grip: np.ndarray, yaw: float, opening: float, closed_gap: float) -> list[Box]:
    """Palm, two fingers and arm for grip frame origin `grip`, yaw and opening in [0, 1] (1 = open)."""
    r = _rot_z(yaw)
    g = np.asarray(grip, dtype=np.float64)
    gap = closed_gap + (OPEN_GAP - closed_gap) * float(np.clip(opening, 0.0, 1.0))
    palm_c = g + np.array([0.0, 0.0, PALM_HALF[2]])
    arm_c = g + np.array([0.0, 0.0, 2 * PALM_HALF[2] + ARM_LENGTH / 2])
    out = [
        Box(PALM_ID, tuple(palm_c), yaw, PALM_HALF, GRIPPER_COLOUR, "palm"),
        Box(ARM_ID, tuple(arm_c), yaw, (ARM_HALF_XY, ARM_HALF_XY, ARM_LENGTH / 2), ARM_COLOUR, "arm"),
    ]
    for pid, side in ((FINGER_L_ID, 1.0), (FINGER_R_ID, -1.0)):
        off = r @ np.array([0.0, side * (gap / 2 + FINGER_HALF[1]), -FINGER_HALF[2]])
        out.append(Box(pid, tuple(g + off), yaw, FINGER_HALF, FINGER_COLOUR, "finger"))
    return out


# ------------------------------------------------------------------------------------------------ ray casting
def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """A deterministic pseudo-random value in [0, 1) per integer lattice cell."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (salt * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float64) / 65536.0


def _value_noise(x: np.ndarray, y: np.ndarray, salt: int) -> np.ndarray:
    """Smooth value noise in [0, 1), unit cells (bilinear over hashed lattice values, smoothstep weights)."""
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = x - ix, y - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)
    a = _hash01(ix, iy, salt)
    b = _hash01(ix + 1, iy, salt)
    c = _hash01(ix, iy + 1, salt)
    d = _hash01(ix + 1, iy + 1, salt)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _checker(a: np.ndarray, b: np.ndarray, cell: float) -> np.ndarray:
    return ((np.floor(a / cell) + np.floor(b / cell)) % 2).astype(np.float64)


def _table_texture(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Brightness factor of the table at base-frame (x, y): wooden planks along x with grain and knots."""
    plank = np.floor(y / 0.07)
    plank_tone = 0.85 + 0.2 * _hash01(plank.astype(np.int64), np.zeros_like(plank, dtype=np.int64), 7)
    grain = 0.5 + 0.5 * np.sin(x * 90.0 + 6.0 * _value_noise(x * 8.0, y * 30.0, 3))
    blotch = _value_noise(x * 25.0, y * 25.0, 11)
    seam = np.where(np.abs(y / 0.07 - np.round(y / 0.07)) < 0.04, 0.55, 1.0)
    return plank_tone * (0.78 + 0.12 * grain + 0.22 * blotch) * seam


def _box_texture(texture: np.ndarray, local: np.ndarray, axis: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Brightness factor on box faces from the hit point in the box frame (textures move with the box)."""
    # Face coordinates: the two box axes other than the face normal.
    a_idx = np.where(axis == 0, 1, 0)
    b_idx = np.where(axis == 2, 1, 2)
    rows = np.arange(local.shape[0])
    a = local[rows, a_idx]
    b = local[rows, b_idx]
    ha = half[rows, a_idx]
    hb = half[rows, b_idx]
    out = np.ones(local.shape[0])
    # Blocks: 4x4 checker per face, low contrast, with a dark border (edges and corners to track).
    m = texture == 0
    if m.any():
        cell = ha[m] / 2
        chk = _checker(a[m] + ha[m], b[m] + hb[m], cell)
        border = (np.abs(a[m]) > ha[m] - 0.004) | (np.abs(b[m]) > hb[m] - 0.004)
        out[m] = np.where(border, 0.45, 0.78 + 0.22 * chk)
    # Palm: checker with 2.5 cm cells whose corner sits at the face centre (the tracked point) and a dark rim.
    m = texture == 1
    if m.any():
        chk = _checker(a[m], b[m], 0.025)
        rim = (np.abs(a[m]) > ha[m] - 0.005) | (np.abs(b[m]) > hb[m] - 0.005)
        out[m] = np.where(rim, 0.35, 0.55 + 0.45 * chk)
    # Fingers: stripes across their length.
    m = texture == 2
    if m.any():
        out[m] = 0.7 + 0.3 * ((np.floor(local[m, 2] / 0.012) % 2))
    # Arm: bands every 5 cm.
    m = texture == 3
    if m.any():
        out[m] = 0.75 + 0.25 * (np.floor(local[m, 2] / 0.05) % 2)
    return out


_TEXTURE_CODE = {"block": 0, "palm": 1, "finger": 2, "arm": 3}


@dataclass(frozen=True)
class Hits:
    """Nearest hit per ray: t (camera-frame depth when rays have camera z = 1; inf on a miss), part id, world
    normal [N, 3], base-frame point [N, 3], and the box-frame point / face axis / box index for box hits."""

    t: np.ndarray
    part: np.ndarray
    normal: np.ndarray
    point: np.ndarray
    local: np.ndarray
    axis: np.ndarray
    box: np.ndarray


def cast_rays(origin: np.ndarray, dirs: np.ndarray, boxes: list[Box],
              candidates: list[np.ndarray | None] | None = None) -> Hits:
    """Nearest hit of rays ``origin + t * dirs`` (t > 0) with the table plane z = 0 and the oriented boxes.

    `candidates[k]`, when given and not None, is a bool mask of the rays that may hit box k (screen-space
    culling); other rays skip that box's test.
    """
    o = np.asarray(origin, dtype=np.float64)
    d = np.asarray(dirs, dtype=np.float64)
    n = d.shape[0]
    best_t = np.full(n, np.inf)
    part = np.full(n, MISS_ID, dtype=np.int32)
    normal = np.zeros((n, 3))
    local = np.zeros((n, 3))
    axis = np.zeros(n, dtype=np.int64)
    box_idx = np.full(n, -1, dtype=np.int64)
    # Table plane.
    with np.errstate(divide="ignore", invalid="ignore"):
        tt = np.where(d[:, 2] < -1e-12, -o[2] / d[:, 2], np.inf)
    hit = tt > 1e-9
    best_t = np.where(hit, tt, best_t)
    part[hit] = TABLE_ID
    normal[hit] = (0.0, 0.0, 1.0)
    for k, bx in enumerate(boxes):
        cand = None if candidates is None else candidates[k]
        sel = np.arange(n) if cand is None else np.flatnonzero(cand)
        if sel.size == 0:
            continue
        r = _rot_z(bx.yaw)
        ob = r.T @ (o - np.asarray(bx.center))
        db = d[sel] @ r  # == (r.T @ d.T).T
        db = np.where(np.abs(db) < 1e-12, 1e-12, db)
        h = np.asarray(bx.half)
        t1 = (-h - ob) / db
        t2 = (h - ob) / db
        tnear = np.minimum(t1, t2)
        tfar = np.maximum(t1, t2)
        ax = np.argmax(tnear, axis=1)
        t_in = tnear[np.arange(sel.size), ax]
        t_out = tfar.min(axis=1)
        m = (t_in <= t_out) & (t_in > 1e-9) & (t_in < best_t[sel])
        if not m.any():
            continue
        rows = sel[m]
        best_t[rows] = t_in[m]
        part[rows] = bx.part_id
        axis[rows] = ax[m]
        box_idx[rows] = k
        nl = np.zeros((rows.size, 3))
        nl[np.arange(rows.size), ax[m]] = -np.sign(db[m, ax[m]])
        normal[rows] = nl @ r.T
        local[rows] = ob + t_in[m, None] * db[m]
    point = o + np.where(np.isfinite(best_t), best_t, 0.0)[:, None] * d
    return Hits(best_t, part, normal, point, local, axis, box_idx)


def _shade(hits: Hits, boxes: list[Box]) -> np.ndarray:
    """Linear RGB [N, 3] of the hits: albedo x texture x (ambient + Lambert)."""
    n = hits.t.shape[0]
    rgb = np.tile(np.asarray(SKY_COLOUR), (n, 1))
    lam = AMBIENT + DIFFUSE * np.clip(hits.normal @ LIGHT_DIR, 0.0, None)
    tab = hits.part == TABLE_ID
    if tab.any():
        tex = _table_texture(hits.point[tab, 0], hits.point[tab, 1])
        rgb[tab] = np.asarray(TABLE_COLOUR) * (tex * lam[tab])[:, None]
    onbox = hits.box >= 0
    if onbox.any():
        idx = hits.box[onbox]
        albedo = np.asarray([b.albedo for b in boxes])[idx]
        half = np.asarray([b.half for b in boxes])[idx]
        code = np.asarray([_TEXTURE_CODE[b.texture] for b in boxes])[idx]
        tex = _box_texture(code, hits.local[onbox], hits.axis[onbox], half)
        rgb[onbox] = albedo * (tex * lam[onbox])[:, None]
    return rgb


def _to_srgb_u8(lin: np.ndarray) -> np.ndarray:
    c = np.clip(lin, 0.0, 1.0)
    s = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.round(s * 255.0).astype(np.uint8)


def _camera_rays(calib: dict, us: np.ndarray, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre and base-frame ray directions scaled so that their camera-frame z is 1 (t = depth)."""
    t = np.asarray(calib["camera_from_base"], dtype=np.float64)
    rot, trans = t[:3, :3], t[:3, 3]
    eye = -rot.T @ trans
    fx, fy, cx, cy = _intrinsics(calib)
    dc = np.stack([(us - cx) / fx, (vs - cy) / fy, np.ones_like(us)], axis=-1)
    return eye, dc @ rot  # rows: rot.T @ dc


@dataclass(frozen=True)
class Frame:
    """One rendered frame: rgb uint8 [H, W, 3], depth float32 [H, W] m (0 = no return), part int8 [H, W]."""

    rgb: np.ndarray
    depth: np.ndarray
    part: np.ndarray


def _box_rect(bx: Box, calib: dict) -> tuple[float, float, float, float] | None:
    """Screen rectangle (u0, u1, v0, v1) holding the box's projection, 1 px margin; None if a corner is behind
    the camera (then the box is tested against every ray)."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    corners = np.asarray(bx.center) + (signs * np.asarray(bx.half)) @ _rot_z(bx.yaw).T
    uv = project(corners, calib)
    if not np.all(np.isfinite(uv)):
        return None
    return uv[:, 0].min() - 1, uv[:, 0].max() + 1, uv[:, 1].min() - 1, uv[:, 1].max() + 1


@functools.lru_cache(maxsize=8)
def _background(calib_json: str, supersample: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The empty table seen through the camera: sub-pixel ray offsets [S, 2], linear colour [S, H*W, 3] and
    t [S, H*W] for each offset. The camera never moves, so this is computed once per camera and reused."""
    calib = json.loads(calib_json)
    h, w = int(calib["intrinsics"]["height"]), int(calib["intrinsics"]["width"])
    vv, uu = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    s = int(supersample)
    grid = (np.arange(s) + 0.5) / s - 0.5
    offsets = np.array([(du, dv) for dv in grid for du in grid]) if s > 1 else np.zeros((1, 2))
    cols, ts = [], []
    for du, dv in offsets:
        eye, d = _camera_rays(calib, uu.ravel() + du, vv.ravel() + dv)
        hits = cast_rays(eye, d, [])
        cols.append(_shade(hits, []))
        ts.append(hits.t)
    return offsets, np.stack(cols), np.stack(ts)


def render(boxes: list[Box], calib: dict, supersample: int = 3, cull: bool = True) -> Frame:
    """Render the table and `boxes` through the camera `calib`.

    Colour is the mean of ``supersample x supersample`` rays per pixel (anti-aliased, so textures do not
    shimmer under motion); depth and part ids come from the ray through the pixel centre (``supersample`` odd)
    or from the nearest sub-pixel ray, so depth is that of a surface actually seen in that pixel. `cull=False`
    tests every ray against every box (same image, slower; for checking the culling).
    """
    h = int(calib["intrinsics"]["height"])
    w = int(calib["intrinsics"]["width"])
    offsets, bg_col, bg_t = _background(json.dumps(calib, sort_keys=True), int(supersample))
    vv, uu = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    uu, vv = uu.ravel(), vv.ravel()
    rects = [_box_rect(b, calib) if cull else None for b in boxes]
    centre = int(np.argmin(np.abs(offsets).sum(axis=1)))
    lin = np.zeros((h * w, 3))
    depth = np.where(np.isfinite(bg_t[centre]), bg_t[centre], 0.0)
    part = np.where(np.isfinite(bg_t[centre]), TABLE_ID, MISS_ID).astype(np.int8)
    for i, (du, dv) in enumerate(offsets):
        us, vs = uu + du, vv + dv
        masks = [
            None if r is None else (us >= r[0]) & (us <= r[1]) & (vs >= r[2]) & (vs <= r[3]) for r in rects
        ]
        if any(m is None for m in masks):
            sel = np.arange(h * w)
        else:
            anym = np.zeros(h * w, dtype=bool)
            for m in masks:
                anym |= m
            sel = np.flatnonzero(anym)
        col = bg_col[i].copy()
        if sel.size:
            eye, d = _camera_rays(calib, us[sel], vs[sel])
            hits = cast_rays(eye, d, boxes, [None if m is None else m[sel] for m in masks])
            col[sel] = _shade(hits, boxes)
            if i == centre:
                depth[sel] = np.where(np.isfinite(hits.t), hits.t, 0.0)
                part[sel] = hits.part
        lin += col
    lin /= len(offsets)
    rgb = _to_srgb_u8(lin).reshape(h, w, 3)
    return Frame(rgb, depth.reshape(h, w).astype(np.float32), part.reshape(h, w))


def point_visible(point: np.ndarray, part_id: int, boxes: list[Box], calib: dict) -> bool:
    """Whether base-frame `point`, lying on the surface of part `part_id`, is seen by the camera (in the image
    and not hidden behind anything)."""
    uv = project(np.asarray(point)[None], calib)[0]
    h = calib["intrinsics"]["height"]
    w = calib["intrinsics"]["width"]
    if not np.all(np.isfinite(uv)) or not (-0.5 <= uv[0] < w - 0.5 and -0.5 <= uv[1] < h - 0.5):
        return False
    eye, d = _camera_rays(calib, uv[:1], uv[1:])
    hit = cast_rays(eye, d, boxes)
    z = camera_depth(np.asarray(point)[None], calib)[0]
    return bool(hit.part[0] == part_id and abs(hit.t[0] - z) < 1e-6)


# ------------------------------------------------------------------------------------------ scripted episodes
@dataclass(frozen=True)
class Layout:
    """Where the blocks are and what the episode does with them."""

    colours: tuple[str, ...]
    centers: np.ndarray  # [K, 3] block centres on the table
    yaws: np.ndarray  # [K]
    pick: int  # index of the block that is moved
    place_on: int | None  # index of the block it goes on, or None for a spot on the table
    place_xy: np.ndarray  # [2] where the moved block's centre ends up
    place_yaw: float
    side: str | None  # "left" | "right" when placed on the table (as seen in the image)
    instruction: str


@dataclass(frozen=True)
class SampleEpisode:
    """One scripted, rendered episode.

    state float32 [T, 7], action float32 [T, 7] (see the module docstring), rgb uint8 [T, H, W, 3],
    depth float32 [T, H, W] metres, gripper_uv float32 [T, 2], gripper_visible bool [T], part int8 [T, H, W].
    """

    index: int
    instruction: str
    state: np.ndarray
    action: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray
    part: np.ndarray
    gripper_uv: np.ndarray
    gripper_visible: np.ndarray
    layout: Layout


_ON_BLOCK = (
    "put the {a} block on the {b} block",
    "stack the {a} cube on top of the {b} cube",
    "pick up the {a} block and place it on the {b} block",
    "place the {a} block onto the {b} one",
)
_ON_SIDE = (
    "move the {a} block to the {side} side of the table",
    "put the {a} cube on the {side}",
    "pick up the {a} block and put it down on the {side}",
)
# Segments of the script and their relative durations.
_SEGMENTS = (
    ("reach", 2.0),
    ("descend", 1.5),
    ("close", 1.0),
    ("lift", 1.5),
    ("carry", 2.0),
    ("lower", 1.5),
    ("open", 1.0),
    ("retreat", 1.5),
)


def _make_layout(rng: np.random.Generator) -> Layout:
    k = int(rng.integers(3, 5))
    colours = tuple(str(c) for c in rng.permutation(list(BLOCK_COLOURS))[:k])
    centers: list[np.ndarray] = []
    while len(centers) < k:
        c = np.array([rng.uniform(0.36, 0.58), rng.uniform(-0.2, 0.2), BLOCK_HALF])
        if all(np.linalg.norm(c[:2] - o[:2]) > 0.13 for o in centers):
            centers.append(c)
    cs = np.stack(centers)
    yaws = rng.uniform(-0.3, 0.3, size=k)
    pick = 0
    a = colours[pick]
    if rng.random() < 0.6:
        place_on = int(rng.integers(1, k))
        place_xy = cs[place_on, :2].copy()
        place_yaw = float(yaws[place_on])
        side = None
        text = _ON_BLOCK[int(rng.integers(len(_ON_BLOCK)))].format(a=a, b=colours[place_on])
    else:
        place_on = None
        side = "left" if rng.random() < 0.5 else "right"
        # Image right is base +y (the camera looks back towards the robot).
        sgn = 1.0 if side == "right" else -1.0
        for _ in range(200):
            xy = np.array([rng.uniform(0.38, 0.56), sgn * rng.uniform(0.2, 0.27)])
            others = [cs[i, :2] for i in range(k) if i != pick]
            if all(np.linalg.norm(xy - o) > 0.12 for o in others) and np.linalg.norm(xy - cs[pick, :2]) > 0.1:
                break
        place_xy = xy
        place_yaw = float(rng.uniform(-0.3, 0.3))
        text = _ON_SIDE[int(rng.integers(len(_ON_SIDE)))].format(a=a, side=side)
    return Layout(colours, cs, yaws, pick, place_on, place_xy, place_yaw, side, text)


def _smooth(s: float) -> float:
    return s * s * (3 - 2 * s)


@dataclass(frozen=True)
class _Pose:
    grip: np.ndarray  # grip frame origin (palm bottom centre)
    yaw: float
    opening: float  # 1 = open
    carried: bool  # whether the picked block moves with the gripper


def _script(layout: Layout, rng: np.random.Generator, steps: int) -> list[_Pose]:
    """Poses at steps 0..T-1: keyframes joined by eased straight moves, sampled at even times."""
    pick_c = layout.centers[layout.pick]
    pick_yaw = float(layout.yaws[layout.pick])
    home = np.array([rng.uniform(0.38, 0.46), rng.uniform(-0.08, 0.08), HOVER_Z + rng.uniform(0.0, 0.04)])
    home_yaw = float(rng.uniform(-0.1, 0.1))
    above_pick = np.array([pick_c[0], pick_c[1], HOVER_Z])
    at_pick = np.array([pick_c[0], pick_c[1], GRASP_Z])
    above_place = np.array([layout.place_xy[0], layout.place_xy[1], HOVER_Z])
    at_place = np.array([layout.place_xy[0], layout.place_xy[1], _place_height(layout)])
    retreat = above_place + np.array([0.0, 0.0, 0.03])
    keys = [  # (grip, yaw, opening, carried) at the END of each segment; the first entry is the start
        (home, home_yaw, 1.0, False),
        (above_pick, pick_yaw, 1.0, False),
        (at_pick, pick_yaw, 1.0, False),
        (at_pick, pick_yaw, 0.0, True),
        (above_pick, pick_yaw, 0.0, True),
        (above_place, layout.place_yaw, 0.0, True),
        (at_place, layout.place_yaw, 0.0, True),
        (at_place, layout.place_yaw, 1.0, False),
        (retreat, layout.place_yaw, 1.0, False),
    ]
    w = np.array([d for _, d in _SEGMENTS])
    bounds = np.concatenate([[0.0], np.cumsum(w) / w.sum()])
    out = []
    for t in range(steps):
        tau = t / max(steps - 1, 1)
        seg = int(min(np.searchsorted(bounds, tau, side="right") - 1, len(_SEGMENTS) - 1))
        s = (tau - bounds[seg]) / (bounds[seg + 1] - bounds[seg])
        (g0, y0, o0, _), (g1, y1, o1, _) = keys[seg], keys[seg + 1]
        name = _SEGMENTS[seg][0]
        e = _smooth(float(np.clip(s, 0.0, 1.0)))
        grip = g0 + (g1 - g0) * e
        yaw = y0 + (y1 - y0) * e
        opening = o0 + (o1 - o0) * float(np.clip(s, 0.0, 1.0))
        # The block is held from the moment the fingers have closed until they start to open.
        carried = name in ("lift", "carry", "lower")
        carried |= (name == "close" and s >= 1.0) or (name == "open" and s <= 0.0)
        out.append(_Pose(grip, float(yaw), float(opening), carried))
    return out


def _scene(layout: Layout, pose: _Pose, grasp: tuple[np.ndarray, float] | None) -> list[Box]:
    """Boxes of the whole scene at one pose. `grasp`: the picked block's centre and yaw in the grip frame."""
    boxes = []
    for i, colour in enumerate(layout.colours):
        c, yaw = layout.centers[i], float(layout.yaws[i])
        if i == layout.pick and grasp is not None:
            rel, rel_yaw = grasp
            c = pose.grip + _rot_z(pose.yaw) @ rel
            yaw = pose.yaw + rel_yaw
        boxes.append(Box(BLOCK_ID0 + i, tuple(c), yaw, (BLOCK_HALF,) * 3, BLOCK_COLOURS[colour], "block"))
    boxes.extend(gripper_boxes(pose.grip, pose.yaw, pose.opening, closed_gap=2 * BLOCK_HALF))
    return boxes


def _place_height(layout: Layout) -> float:
    """Grip frame height when the moved block is put down (+1 mm so that it rests on, not in, its support)."""
    surface = 2 * BLOCK_HALF if layout.place_on is not None else 0.0
    return GRASP_Z + surface + 0.001


def _episode_scenes(layout: Layout, poses: list[_Pose]) -> list[list[Box]]:
    """The scene at every step: the picked block rests, rides with the gripper, then rests where it was put.

    The grasp is taken from the keyframes (grip frame at the grasp pose), not from whichever step happens to
    be sampled first, so the block sits in the same place in the hand and lands exactly on its support at
    any number of steps.
    """
    pick_c = layout.centers[layout.pick]
    # The block in the grip frame: the gripper grasps straight over it, aligned with its yaw.
    grasp = (np.array([0.0, 0.0, pick_c[2] - GRASP_Z]), 0.0)
    placed_c = np.array([layout.place_xy[0], layout.place_xy[1], _place_height(layout) + grasp[0][2]])
    centers = layout.centers.copy()
    yaws = layout.yaws.copy()
    centers[layout.pick] = placed_c
    yaws[layout.pick] = layout.place_yaw
    moved = Layout(**{**layout.__dict__, "centers": centers, "yaws": yaws})
    scenes = []
    was_carried = False
    for p in poses:
        if p.carried:
            scenes.append(_scene(layout, p, grasp))
            was_carried = True
        else:
            scenes.append(_scene(moved if was_carried else layout, p, None))
    return scenes


def _visible_fraction(layout: Layout, poses: list[_Pose], calib: dict) -> float:
    scenes = _episode_scenes(layout, poses)
    vis = [point_visible(eef_point(p.grip, p.yaw), PALM_ID, s, calib) for p, s in zip(poses, scenes)]
    return float(np.mean(vis))


def plan_episode(
    seed: int, index: int, steps: int, calib: dict
) -> tuple[Layout, list[_Pose], list[list[Box]]]:
    """The layout, the gripper pose at every step and the scene (boxes) at every step of episode `index`.

    Layouts in which the tracked point would be hidden for more than 10% of the steps are redrawn (seeded), so
    that the sample measures tracking rather than occlusion; occluded steps that remain are flagged in
    ``gripper_visible``.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    best = None
    for _ in range(20):
        layout = _make_layout(rng)
        poses = _script(layout, rng, steps)
        frac = _visible_fraction(layout, poses, calib)
        if best is None or frac > best[0]:
            best = (frac, layout, poses)
        if frac >= 0.9:
            break
    _, layout, poses = best
    return layout, poses, _episode_scenes(layout, poses)


def make_episode(seed: int, index: int, steps: int = 40, height: int = 128, width: int = 160,
                 supersample: int = 3) -> SampleEpisode:
    """Script and render episode `index` of the sample with `seed` (independent of the episode count)."""
    if steps < 2:
        raise ArmdataError(f"the sample needs at least 2 steps per episode, got {steps}")
    calib = sample_calibration(height, width)
    layout, poses, scenes = plan_episode(seed, index, steps, calib)
    eef = np.stack([eef_point(p.grip, p.yaw) for p in poses])
    state = np.zeros((steps, 7), dtype=np.float32)
    state[:, :3] = eef
    state[:, 5] = [p.yaw for p in poses]
    state[:, 6] = [p.opening for p in poses]
    action = np.zeros((steps, 7), dtype=np.float32)
    action[:-1, :6] = state[1:, :6] - state[:-1, :6]
    # Gripper target: where the opening is heading over the step; where it holds still, its current value.
    target = np.where(state[1:, 6] < state[:-1, 6], 0.0, np.where(state[1:, 6] > state[:-1, 6], 1.0,
                                                                   np.round(state[:-1, 6])))
    action[:-1, 6] = target
    action[-1, 6] = np.round(state[-1, 6])

    # Ground truth from the float32 state the dataset stores, so that gripper_uv == project(state[:, :3]).
    uv = project(state[:, :3].astype(np.float64), calib)
    visible = np.array([point_visible(eef[t], PALM_ID, scenes[t], calib) for t in range(steps)])
    frames = [render(s, calib, supersample) for s in scenes]
    return SampleEpisode(
        index=int(index),
        instruction=layout.instruction,
        state=state,
        action=action,
        rgb=np.stack([f.rgb for f in frames]),
        depth=np.stack([f.depth for f in frames]),
        part=np.stack([f.part for f in frames]),
        gripper_uv=uv.astype(np.float32),
        gripper_visible=visible,
        layout=layout,
    )


# ------------------------------------------------------------------------------------------------ RLDS writer
def sample_features(height: int = 128, width: int = 160):
    """The tfds feature spec of the sample (RLDS layout)."""
    import tensorflow_datasets as tfds

    f = tfds.features
    return f.FeaturesDict(
        {
            "steps": f.Dataset(
                {
                    "observation": f.FeaturesDict(
                        {
                            "image": f.Image(shape=(height, width, 3), dtype=np.uint8,
                                             encoding_format="jpeg"),
                            "depth": f.Image(shape=(height, width, 1), dtype=np.uint16,
                                             encoding_format="png",
                                             doc="depth camera, millimetres (0 = no return)"),
                            "state": f.Tensor(shape=(7,), dtype=np.float32,
                                              doc="x y z (m, base frame; the tracked palm point) "
                                                  "roll pitch yaw (rad) gripper_open (1 = open)"),
                        }
                    ),
                    "action": f.Tensor(shape=(7,), dtype=np.float32,
                                       doc="dx dy dz droll dpitch dyaw, gripper target (1 open, 0 closed)"),
                    "language_instruction": f.Text(),
                    "is_first": f.Scalar(dtype=np.bool_),
                    "is_last": f.Scalar(dtype=np.bool_),
                    "is_terminal": f.Scalar(dtype=np.bool_),
                    "reward": f.Scalar(dtype=np.float32),
                    "discount": f.Scalar(dtype=np.float32),
                }
            ),
            "episode_metadata": f.FeaturesDict(
                {
                    "file_path": f.Text(),
                    "episode_id": f.Scalar(dtype=np.int32),
                    "gripper_uv": f.Tensor(shape=(None, 2), dtype=np.float32,
                                           doc="true pixel (u right, v down) of the tracked point per step"),
                    "gripper_visible": f.Tensor(shape=(None,), dtype=np.bool_,
                                                doc="False where the tracked point is hidden or off-image"),
                }
            ),
        }
    )


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """Depth in metres -> uint16 millimetres [..., 1] as the depth camera stores it (0 stays 0)."""
    return np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)[..., None]


def _example(ep: SampleEpisode, seed: int) -> dict:
    t_len = ep.state.shape[0]
    depth_mm = depth_to_mm(ep.depth)
    steps = []
    for t in range(t_len):
        last = t == t_len - 1
        steps.append(
            {
                "observation": {"image": ep.rgb[t], "depth": depth_mm[t], "state": ep.state[t]},
                "action": ep.action[t],
                "language_instruction": ep.instruction,
                "is_first": t == 0,
                "is_last": last,
                "is_terminal": last,
                "reward": np.float32(1.0 if last else 0.0),
                "discount": np.float32(1.0),
            }
        )
    return {
        "steps": steps,
        "episode_metadata": {
            "file_path": f"{SAMPLE_NAME}/seed_{seed}/episode_{ep.index:04d}",
            "episode_id": np.int32(ep.index),
            "gripper_uv": ep.gripper_uv,
            "gripper_visible": ep.gripper_visible,
        },
    }


def make_sample(out_dir: str | os.PathLike, episodes: int = 6, steps: int = 40, seed: int = 0,
                height: int = 128, width: int = 160, overwrite: bool = False) -> str:
    """Write the sample as an RLDS builder dir under `out_dir` and return it (``OUT/armdata_sample/1.0.0``).

    The dataset is built in a temporary folder beside the target and renamed into place, so a reader never
    sees a half-written dataset. An existing result is an error unless `overwrite`.
    """
    if episodes < 1:
        raise ArmdataError(f"the sample needs at least 1 episode, got {episodes}")
    out = Path(out_dir).expanduser().resolve()
    final = out / SAMPLE_NAME / SAMPLE_VERSION
    if final.exists() and not overwrite:
        raise ArmdataError(f"{final} exists already (pass overwrite=True / --overwrite to replace it)")
    (out / SAMPLE_NAME).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-sample-", dir=out))
    try:
        built = _write_rlds(tmp, episodes, steps, seed, height, width)
        if final.exists():
            trash = out / SAMPLE_NAME / f".old-{uuid.uuid4().hex}"
            os.rename(final, trash)
            os.rename(built, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(built, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote the sample (%d episodes x %d steps, %dx%d) to %s", episodes, steps, height, width,
                final)
    return str(final)


def _write_rlds(data_dir: Path, episodes: int, steps: int, seed: int, height: int, width: int) -> Path:
    import tensorflow_datasets as tfds

    examples = []
    for i in range(episodes):
        ep = make_episode(seed, i, steps, height, width)
        examples.append((f"episode_{i:04d}", _example(ep, seed)))
        logger.debug("rendered episode %d: %s", i, ep.instruction)
    # tfds prints its "Downloading and preparing" banner to stdout; keep stdout for the caller's results.
    banner = io.StringIO()
    with contextlib.redirect_stdout(banner):
        tfds.dataset_builders.store_as_tfds_dataset(
            name=SAMPLE_NAME,
            version=SAMPLE_VERSION,
            features=sample_features(height, width),
            split_datasets={SAMPLE_SPLIT: examples},
            data_dir=str(data_dir),
            description="armdata's built-in synthetic sample: a rendered pick-and-place world, ground truth.",
            disable_shuffling=True,
        )
    for line in banner.getvalue().splitlines():
        logger.debug("tfds: %s", line)
    return data_dir / SAMPLE_NAME / SAMPLE_VERSION


# ------------------------------------------------------------------------------------------ built-in datasets
# name -> parameters of make_sample. One registry; `builtin:<name>` in a source file's data.dir resolves here.
BUILTIN_DATASETS: dict[str, dict[str, int]] = {"sample": dict(DEFAULT_PARAMS)}
BUILTIN_PREFIX = "builtin:"


def _params_hash(params: dict) -> str:
    # The renderer's own source is part of the key: a change in how the world looks makes a new cached copy.
    body = json.dumps({"params": params, "version": SAMPLE_VERSION}, sort_keys=True).encode()
    code = Path(__file__).read_bytes()
    return hashlib.sha256(body + code).hexdigest()[:12]


def builtin_dataset_dir(spec: str) -> str:
    """Resolve ``builtin:<name>`` to a builder dir, making and caching the dataset on first use.

    The copy lives under ``cache_root()/builtin/<name>-<version>-<hash>`` (hash of the parameters and the
    renderer's code). Two processes may race to make it: each builds in its own temporary folder and renames
    it into place; the loser finds the winner's result and uses it.
    """
    if not spec.startswith(BUILTIN_PREFIX):
        raise ArmdataError(f"not a built-in dataset spec (expected '{BUILTIN_PREFIX}<name>'): {spec!r}")
    name = spec[len(BUILTIN_PREFIX):]
    if name not in BUILTIN_DATASETS:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        raise ArmdataError(f"unknown built-in dataset {name!r} (known: {known})")
    params = BUILTIN_DATASETS[name]
    root = cache_root() / "builtin"
    home = root / f"{name}-{SAMPLE_VERSION}-{_params_hash(params)}"
    builder_dir = home / SAMPLE_NAME / SAMPLE_VERSION
    if builder_dir.is_dir():
        return str(builder_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cached copy may be shared by other users' jobs
    try:
        logger.info("making the built-in %r dataset in %s (first use)", name, home)
        make_sample(tmp, **params)
        try:
            os.rename(tmp, home)
        except OSError:
            if not builder_dir.is_dir():  # not a lost race: a real failure
                raise
            logger.info("another process made %s first; using it", home)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(builder_dir)
