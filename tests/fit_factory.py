"""A robot cell unlike the built-in world, for the calibration-free camera fit: an RLDS dataset written on the fly,
its ground truth, and points tables with noise and wrong answers.

What differs from armdata's sample world: image size 120x176 (not 128x160), a dark blue-grey gradient floor with
blotches (not a textured table), a round orange gripper with two dark fingers drawn by OpenCV (not a rendered
two-box gripper), field names ``observation/agentview_rgb`` and ``observation/tcp_pose`` (end-effector position
in millimetres, then a quaternion), the instruction in ``episode_metadata/task``, and a camera at another pose and
focal length that armdata is never given. Ground truth (``episode_metadata/gripper_uv``, ``gripper_visible``) is
the projection of the end effector through that camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rlds_factory import write_rlds

H, W = 120, 176


def look_at(centre, target, up=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """R, t of a camera at ``centre`` looking at ``target`` (x right, y down, z forward)."""
    c = np.asarray(centre, float)
    z = np.asarray(target, float) - c
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    r = np.stack([x, y, z])
    return r, -r @ c


#: The cell's camera (never given to armdata): 1.1 m away, up and to the right, fx 196, fy 192.
CAM_R, CAM_T = look_at((1.02, -0.58, 0.74), (0.40, 0.0, 0.12))
CAM_K = np.array([[196.0, 0.0, 89.3], [0.0, 192.0, 57.6], [0.0, 0.0, 1.0]])


def project_true(xyz_m: np.ndarray, r: np.ndarray = CAM_R, t: np.ndarray = CAM_T) -> tuple[np.ndarray, np.ndarray]:
    cam = np.asarray(xyz_m, float) @ r.T + t
    uvw = cam @ CAM_K.T
    return uvw[:, :2] / uvw[:, 2:], cam[:, 2]


def eef_path(rng: np.random.Generator, steps: int) -> np.ndarray:
    """A smooth end-effector path in metres inside the cell's workspace (x 0.25..0.55, y -0.2..0.2, z 0.02..0.3)."""
    lo, hi = np.array([0.25, -0.2, 0.02]), np.array([0.55, 0.2, 0.30])
    s = np.linspace(0, 1, steps)[:, None]
    way = rng.uniform(lo, hi, (4, 3))
    knots = np.linspace(0, 1, 4)
    path = np.stack([np.interp(s[:, 0], knots, way[:, k]) for k in range(3)], axis=1)
    wob = 0.02 * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5, 3) * s + rng.uniform(0, 1, 3)))
    return np.clip(path + wob, lo, hi)


def _floor(rng: np.random.Generator) -> np.ndarray:
    g = np.linspace(40, 95, H)[:, None, None] * np.array([0.8, 0.9, 1.2])[None, None, :]
    img = np.broadcast_to(g, (H, W, 3)).copy()
    for _ in range(12):
        c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        cv2.circle(img, c, int(rng.integers(4, 14)), tuple(float(x) for x in rng.uniform(30, 120, 3)), -1)
    return cv2.GaussianBlur(img, (0, 0), 2.0).clip(0, 255).astype(np.uint8)


def draw_gripper(floor: np.ndarray, uv: np.ndarray, depth: float, opening: float) -> np.ndarray:
    """A round orange palm at uv with two dark fingers below it, sized by depth."""
    img = floor.copy()
    r = max(3, int(round(0.035 * CAM_K[0, 0] / depth)))
    u, v = (int(round(x)) for x in uv)
    gap = int(round(r * (0.4 + 0.8 * opening)))
    for side in (-1, 1):
        cv2.rectangle(img, (u + side * gap - 1, v), (u + side * gap + 1, v + 2 * r), (25, 25, 30), -1)
    cv2.circle(img, (u, v), r, (235, 120, 30), -1, lineType=cv2.LINE_AA)
    return img


@dataclass
class CellDataset:
    builder_dir: Path
    source: dict
    eef_m: list[np.ndarray]  # per episode [T, 3]
    gt_uv: list[np.ndarray]  # per episode [T, 2]
    file_paths: list[str]


def robot_cell(root: str | Path, num_episodes: int = 10, steps: int = 30, seed: int = 7,
               camera_moves: bool = False) -> CellDataset:
    """Write the cell's RLDS dataset; ``camera_moves`` turns the camera a little differently in every episode."""
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(seed)
    f = tfds.features
    features = f.FeaturesDict({
        "steps": f.Dataset({
            "observation": f.FeaturesDict({
                "agentview_rgb": f.Image(shape=(H, W, 3), dtype=np.uint8, encoding_format="png"),
                "tcp_pose": f.Tensor(shape=(7,), dtype=np.float32, doc="x y z (mm), qx qy qz qw"),
            }),
            "action": f.Tensor(shape=(7,), dtype=np.float32),
            "is_first": f.Scalar(dtype=np.bool_),
            "is_last": f.Scalar(dtype=np.bool_),
        }),
        "episode_metadata": f.FeaturesDict({
            "file_path": f.Text(),
            "task": f.Text(),
            "gripper_uv": f.Tensor(shape=(None, 2), dtype=np.float32),
            "gripper_visible": f.Tensor(shape=(None,), dtype=np.bool_),
        }),
    })
    examples, eefs, gts, paths = [], [], [], []
    for i in range(num_episodes):
        r, t = CAM_R, CAM_T
        if camera_moves:
            r, t = look_at((1.02 + 0.1 * rng.normal(), -0.58 + 0.25 * rng.normal(), 0.74), (0.40, 0.0, 0.12))
        eef = eef_path(rng, steps)
        uv, depth = project_true(eef, r, t)
        vis = (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1) & (depth > 0)
        floor = _floor(rng)
        opening = (np.arange(steps) < steps // 2).astype(float)
        frames = [draw_gripper(floor, uv[s], depth[s], opening[s]) for s in range(steps)]
        action = np.concatenate([np.diff(eef, axis=0, append=eef[-1:]), np.zeros((steps, 3)), opening[:, None]], 1)
        pose = np.concatenate([eef * 1000.0, np.tile([0, 0, 0, 1.0], (steps, 1))], 1).astype(np.float32)
        path = f"/logs/cell_b/2024-03-{i + 1:02d}/episode_{i:03d}.h5"
        examples.append({
            "steps": [{"observation": {"agentview_rgb": frames[s], "tcp_pose": pose[s]},
                       "action": action[s].astype(np.float32), "is_first": s == 0, "is_last": s == steps - 1}
                      for s in range(steps)],
            "episode_metadata": {"file_path": path, "task": f"move the part to bin {i % 3}",
                                 "gripper_uv": uv.astype(np.float32), "gripper_visible": vis},
        })
        eefs.append(eef)
        gts.append(uv)
        paths.append(path)
    builder_dir = write_rlds(root, "robot_cell", features, examples)
    source = {
        "name": "robot_cell",
        "description": "factory: a robot cell with an uncalibrated camera",
        "data": {"dir": str(builder_dir), "split": "train"},
        "cameras": {"primary": "observation/agentview_rgb"},
        "instruction": {"path": "episode_metadata/task"},
        "action": {
            "arm": [{"path": "action", "index": [0, 1, 2, 3, 4, 5]}],
            "gripper": {"path": "action", "index": 6, "mode": "absolute", "open_value": 1.0, "closed_value": 0.0},
            "raw_width": {"action": 7},
        },
        "state": {"keys": ["observation/tcp_pose"],
                  "eef_position": {"path": "observation/tcp_pose", "index": [0, 1, 2], "scale": 0.001}},
        "control_hz": 10.0,
        "camera_moves_between_episodes": camera_moves,
    }
    return CellDataset(builder_dir, source, eefs, gts, paths)


def noisy_points(ds: CellDataset, coverage: float = 0.18, sigma: float = 1.5, outlier_frac: float = 0.1,
                 seed: int = 3) -> tuple[list[dict], set[tuple[str, int]]]:
    """Rows of a points table on ``coverage`` of the steps: truth + N(0, sigma) px, and ``outlier_frac`` of them
    replaced by a wrong answer at least 20 px away (a pointer that pointed at something else). Returns the rows and
    the (file_path, step) of each outlier."""
    rng = np.random.default_rng(seed)
    cells = [(e, s) for e, gt in enumerate(ds.gt_uv) for s in range(len(gt))]
    pick = rng.choice(len(cells), int(coverage * len(cells)), replace=False)
    n_out = int(round(outlier_frac * len(pick)))
    rows, outliers = [], set()
    for j, c in enumerate(pick):
        e, s = cells[c]
        u, v = ds.gt_uv[e][s] + rng.normal(0, sigma, 2)
        if j < n_out:
            while True:
                u, v = rng.uniform([0, 0], [W - 1, H - 1])
                if np.hypot(u - ds.gt_uv[e][s][0], v - ds.gt_uv[e][s][1]) > 20:
                    break
            outliers.add((ds.file_paths[e], s))
        rows.append({"episode": ds.file_paths[e], "step": int(s), "u": float(u), "v": float(v), "confidence": 0.9})
    return rows, outliers


def save_tiny_owlv2(out_dir: str | Path, seed: int = 0) -> Path:
    """A randomly initialised OWLv2 of the real architecture (~50k parameters) with the real processor (its PIL
    image processor at 32x32 and a character-level CLIP tokenizer built here), saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (CLIPTokenizerFast, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor,
                              Owlv2Processor)

    vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz ")}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    clip = CLIPTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                             pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    out_dir = Path(out_dir)
    Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 32, "width": 32}), tokenizer=clip) \
        .save_pretrained(out_dir)
    ids = dict(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
               pad_token_id=vocab["<|endoftext|>"])
    cfg = Owlv2Config(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         vocab_size=len(vocab), max_position_embeddings=16, **ids),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    Owlv2ForObjectDetection(cfg).eval().save_pretrained(out_dir)
    return out_dir
