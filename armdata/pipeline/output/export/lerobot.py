"""``armdata export lerobot OUT --to DIR``: a finished output as a LeRobot v3.0 dataset, frame for frame with the
source episodes; ``--layout molmoact2-depth``: MolmoAct2's depth companion dataset. No model runs.

Layout ``v3.0`` (LeRobot 0.4.4's, read from huggingface/lerobot ``src/lerobot/datasets/utils.py`` and
``lerobot_dataset.py``; the test ``tests/output/test_export_lerobot.py`` holds the specification with line numbers)::

    DIR/meta/info.json                              codebase_version v3.0, fps, features, totals, path templates
    DIR/meta/stats.json                             per numeric feature: min max mean std count q01 q10 q50 q90 q99
    DIR/meta/tasks.parquet                          task_index, indexed by the task text (the instruction)
    DIR/meta/episodes/chunk-000/file-000.parquet    one row per episode: length, tasks, data file, index range
    DIR/data/chunk-000/file-{f:03d}.parquet         one row per frame (at most ROWS_PER_FILE rows per file)

No videos: the dataset carries annotations (``video_path`` null, as LeRobot writes a dataset without videos); the
source's own images stay where they are. Every frame row has LeRobot's five columns (``episode_index``,
``frame_index``, ``index``, ``timestamp`` = frame_index / fps, ``task_index``), the canonical ``action``, and the
``annotation.*`` features of ``ANNOTATION_FEATURES`` plus ``annotation.text.{template}.prompt|answer`` for every
template. Missing values are explicit: depth codes -1, trace points -1 past ``annotation.trace_len``, gripper uv
NaN. Episodes are numbered 0..N-1 in (source, source episode) order, so an export of a whole LeRobot source has
the source's own episode indices; ``annotation.source_episode_id`` and ``annotation.sample_key`` name each row's
origin either way.

Layout ``molmoact2-depth`` (allenai/molmoact2 ``scripts/generate_depth_annotation.py``, read as a reference:
``setup_output_dataset``, ``process_episode_frames``, ``process_parquet_file``): the source LeRobot dataset's
``meta/`` copied, ``videos`` linked, info.json gaining the features ``depth_codes``, ``buffer_codes`` (int16,
shape [100], names null, a description) and ``depth_updated_mask`` (bool) and a ``depth_vae`` block; every data
parquet file copied with three list columns appended: ``depth_codes`` list<int16>, ``buffer_codes`` list<int16>
(the episode's token buffer: frame 0's codes, then each 32x32 patch whose RGB cosine similarity to the previous
frame's (both resized to 320x320, bilinear) is below 0.996 takes the new frame's code) and
``depth_updated_mask`` list<bool>. Frames for the similarity come from the source videos (the camera the codes
were made on). For a source that is not a LeRobot dataset, the companion is aligned with this exporter's ``v3.0``
layout instead (its five frame columns plus the three), frames from the shards' primary images.

Memory: both layouts hold the whole output's annotations (no images) to order episodes and number frames; the
companion holds at most one episode's images at a time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from armdata.pipeline.output import reader as rd
from armdata.pipeline.output.export.base import ExportResult, iter_samples, register, staged_folder
from armdata.schemas.errors import ArmdataError
from armdata.schemas.sample import NUM_DEPTH_CODES, TRACE_MAX_POINTS, SampleAnnotation

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
CHUNKS_SIZE = 1000  # LeRobot's DEFAULT_CHUNK_SIZE: files per chunk folder
ROWS_PER_FILE = 50_000  # frames per data file (LeRobot cuts at ~100 MB; annotation rows are ~2-4 KB with texts)
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # LeRobot 0.4.4 compute_stats.DEFAULT_QUANTILES -> q01 .. q99
ACTION_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]

# LeRobot's DEFAULT_FEATURES (utils.py): every frame row has these.
FRAME_FEATURES: dict[str, dict] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
ANNOTATION_FEATURES: dict[str, dict] = {
    "action": {"dtype": "float32", "shape": [7], "names": ACTION_NAMES},
    "annotation.depth_codes": {"dtype": "int16", "shape": [NUM_DEPTH_CODES], "names": None},
    "annotation.trace_uv255": {"dtype": "int16", "shape": [2 * TRACE_MAX_POINTS], "names": None},
    "annotation.trace_len": {"dtype": "int64", "shape": [1], "names": None},
    "annotation.gripper_uv": {"dtype": "float32", "shape": [2], "names": ["u", "v"]},
    "annotation.gripper_method": {"dtype": "string", "shape": [1], "names": None},
    "annotation.gripper_confidence": {"dtype": "float32", "shape": [1], "names": None},
    "annotation.action_normalized": {"dtype": "float32", "shape": [7], "names": ACTION_NAMES},
    "annotation.action_bins": {"dtype": "int64", "shape": [7], "names": ACTION_NAMES},
    "annotation.action_ids": {"dtype": "int64", "shape": [7], "names": ACTION_NAMES},
    "annotation.flags": {"dtype": "string", "shape": [1], "names": None},
    "annotation.sample_key": {"dtype": "string", "shape": [1], "names": None},
    "annotation.source_episode_id": {"dtype": "string", "shape": [1], "names": None},
}

# MolmoAct2's companion columns, as its generator declares them.
MA2_GRID = NUM_DEPTH_CODES
MA2_THRESHOLD = 0.996
MA2_VAE_IMAGE_SIZE = 320
MA2_PATCH = 32
MA2_FEATURES = {
    "depth_codes": {"dtype": "int16", "shape": [MA2_GRID], "names": None,
                    "description": "Per-frame VQVAE depth codes."},
    "buffer_codes": {"dtype": "int16", "shape": [MA2_GRID], "names": None,
                     "description": "Depth token buffer state after patch updates."},
    "depth_updated_mask": {"dtype": "bool", "shape": [MA2_GRID], "names": None,
                           "description": "Mask of depth patches updated in the buffer."},
}


@dataclass
class _Episode:
    source: str
    key: str
    source_episode_id: str
    instruction: str
    anns: list[SampleAnnotation]
    jpgs: list[bytes] | None = None
    depth: tuple[list, list, list] | None = None  # (codes, buffer codes, updated masks) per frame, when made


# ------------------------------------------------------------------------------------------------------------
# reading the output


def _collect(out_dir: Path, with_images: bool = False) -> list[_Episode]:
    """Every episode's annotations, in (source, source episode) order. With ``with_images`` each episode's primary
    images are read too and turned into its depth buffer as soon as the episode is complete (an episode's samples
    are contiguous in its shard), so at most one episode's images are held at a time."""
    eps: dict[tuple[str, str], _Episode] = {}
    current: _Episode | None = None
    for _, members, ann in iter_samples(out_dir):
        k = (ann.source, ann.episode)
        if current is None or (current.source, current.key) != k:
            if current is not None:
                _finish(out_dir, current, with_images)
            if k in eps:
                raise ArmdataError(f"{out_dir}: the samples of episode {ann.source}/{ann.episode} are not together "
                                   "in one shard (not an armdata output, or edited)")
            current = eps[k] = _Episode(ann.source, ann.episode, ann.source_episode_id or ann.episode,
                                        ann.instruction, [], [] if with_images else None)
        current.anns.append(ann)
        if with_images:
            current.jpgs.append(members["jpg"])
    if current is not None:
        _finish(out_dir, current, with_images)
    return sorted(eps.values(), key=lambda e: (e.source, _natural(e.source_episode_id), e.key))


def _finish(out_dir: Path, e: _Episode, with_images: bool) -> None:
    """Steps in order and complete; with images, the depth columns made and the images dropped."""
    order = np.argsort([a.step for a in e.anns], kind="stable")
    e.anns = [e.anns[i] for i in order]
    if e.jpgs is not None:
        e.jpgs = [e.jpgs[i] for i in order]
    steps = [a.step for a in e.anns]
    if steps != list(range(e.anns[0].num_steps)):
        raise ArmdataError(f"{out_dir}: episode {e.source}/{e.key} has steps {steps[:5]}... of "
                           f"{e.anns[0].num_steps}: not a whole episode, cannot align it frame for frame")
    if with_images:
        e.depth = _depth_columns(e, None)
        e.jpgs = None


def _natural(s: str) -> tuple:
    """Sort key that orders ``episode_2`` before ``episode_10``."""
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))


def _run_sources(out_dir: Path) -> list[dict]:
    return list(rd.read_run(out_dir).get("sources") or [])


def _fps(out_dir: Path) -> int:
    """The frame rate: a LeRobot source's recorded fps, else the source file's control_hz; 10 when neither is
    known (said in a warning: timestamps are then frame_index / 10)."""
    rates = []
    for s in _run_sources(out_dir):
        info = Path(s.get("data_dir", "")) / "meta" / "info.json"
        if info.is_file():
            rates.append(float(json.loads(info.read_text())["fps"]))
            continue
        if s.get("file") and Path(s["file"]).is_file():
            from armdata.schemas.source import load_source

            hz = load_source(s["file"]).control_hz
            if hz:
                rates.append(float(hz))
    rates = sorted(set(rates))
    if len(rates) > 1:
        raise ArmdataError(f"{out_dir}: its sources run at different rates {rates}; a LeRobot dataset has one fps "
                           "(export the sources from separate outputs)")
    if not rates:
        logger.warning("%s: no source rate known (no LeRobot fps, no control_hz); writing fps 10", out_dir)
        return 10
    return int(round(rates[0]))


# ------------------------------------------------------------------------------------------------------------
# frame rows


def _pad(values: list | None, n: int, fill) -> list:
    values = list(values or [])
    return values[:n] + [fill] * (n - len(values))


def _annotation_row(a: SampleAnnotation) -> dict[str, Any]:
    trace = [int(x) for p in (a.trace_uv255 or []) for x in p]
    uv = a.gripper.uv if a.gripper.uv is not None else [math.nan, math.nan]
    row = {
        "action": [float(x) for x in a.action.raw],
        "annotation.depth_codes": _pad(a.depth_codes, NUM_DEPTH_CODES, -1),
        "annotation.trace_uv255": _pad(trace, 2 * TRACE_MAX_POINTS, -1),
        "annotation.trace_len": len(a.trace_uv255 or []),
        "annotation.gripper_uv": [float(uv[0]), float(uv[1])],
        "annotation.gripper_method": a.gripper.method,
        "annotation.gripper_confidence": float(a.gripper.confidence),
        "annotation.action_normalized": [float(x) for x in a.action.normalized],
        "annotation.action_bins": [int(x) for x in a.action.bins],
        "annotation.action_ids": [int(x) for x in a.action.ids],
        "annotation.flags": ",".join(a.flags),
        "annotation.sample_key": a.key,
        "annotation.source_episode_id": a.source_episode_id or a.episode,
    }
    return row


def text_feature_names(templates: list[str]) -> list[str]:
    return [f"annotation.text.{t}.{part}" for t in templates for part in ("prompt", "answer")]


def _frame_rows(eps: list[_Episode], fps: int, tasks: dict[str, int], templates: list[str],
                with_annotations: bool = True) -> list[dict]:
    rows, g = [], 0
    for ep_index, e in enumerate(eps):
        for a in e.anns:
            row = {"timestamp": a.step / fps, "frame_index": a.step, "episode_index": ep_index, "index": g,
                   "task_index": tasks[e.instruction]}
            if with_annotations:
                row.update(_annotation_row(a))
                for t in templates:
                    text = a.text.get(t) or {}
                    row[f"annotation.text.{t}.prompt"] = text.get("prompt", "")
                    row[f"annotation.text.{t}.answer"] = text.get("answer", "")
            rows.append(row)
            g += 1
    return rows


def arrow_type(feature: dict, variable: bool = False):
    """The parquet column type LeRobot's loader expects for a features entry (datasets' Value / fixed Sequence);
    ``variable``: a plain list, as MolmoAct2's generator writes its columns."""
    import pyarrow as pa

    dtype = feature["dtype"]
    base = pa.string() if dtype == "string" else pa.bool_() if dtype == "bool" else pa.from_numpy_dtype(np.dtype(dtype))
    n = int(np.prod(feature["shape"]))
    if list(feature["shape"]) == [1]:
        return base
    return pa.list_(base) if variable else pa.list_(base, n)


def _schema(features: dict[str, dict], variable: frozenset[str] = frozenset()):
    import pyarrow as pa

    return pa.schema([(k, arrow_type(f, k in variable)) for k, f in features.items() if f["dtype"] != "video"])


# ------------------------------------------------------------------------------------------------------------
# stats


def feature_stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's per-feature statistics over frames (axis 0), NaN ignored; every value a list (shape kept)."""
    import warnings

    v = values.astype(np.float64).reshape(len(values), -1)
    out: dict[str, list] = {"count": [int(len(v))]}
    if not np.isfinite(v).any():
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (no gripper found) gives NaN stats
        out.update(min=np.nanmin(v, 0).tolist(), max=np.nanmax(v, 0).tolist(), mean=np.nanmean(v, 0).tolist(),
                   std=np.nanstd(v, 0).tolist())
        for q in QUANTILES:
            out[f"q{int(q * 100):02d}"] = np.nanquantile(v, q, axis=0).tolist()
    return out


def _stats(rows: list[dict], features: dict[str, dict]) -> dict:
    out = {}
    for k, f in features.items():
        if f["dtype"] in ("string", "video", "image"):
            continue
        out[k] = feature_stats(np.asarray([r[k] for r in rows], dtype=np.float64))
    return out


# ------------------------------------------------------------------------------------------------------------
# writing


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=4, ensure_ascii=False, allow_nan=False), encoding="utf-8")


def _write_tasks(root: Path, tasks: dict[str, int]) -> None:
    import pandas as pd

    path = root / "meta" / "tasks.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    # As LeRobot writes it: a task_index column indexed by the task text.
    pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks.keys())).to_parquet(path)


def _write_data(root: Path, rows: list[dict], features: dict[str, dict],
                variable: frozenset[str] = frozenset()) -> list[tuple[int, int, int]]:
    """Frame rows into data files of at most ROWS_PER_FILE rows, whole episodes per file; returns per episode
    (chunk, file) in episode order, and the files' first rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(features, variable)
    by_ep: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_ep[r["episode_index"]].append(r)
    placement, files, cur, n = [], [[]], 0, 0
    for ep in sorted(by_ep):
        if files[-1] and n + len(by_ep[ep]) > ROWS_PER_FILE:
            files.append([])
            cur, n = cur + 1, 0
        files[-1].extend(by_ep[ep])
        n += len(by_ep[ep])
        placement.append((ep, cur // CHUNKS_SIZE, cur % CHUNKS_SIZE))
    for i, part in enumerate(files):
        path = root / DATA_PATH.format(chunk_index=i // CHUNKS_SIZE, file_index=i % CHUNKS_SIZE)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(part, schema=schema)
        with pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=True) as w:
            w.write_table(table)
    return placement


def _write_episodes(root: Path, eps: list[_Episode], placement: list[tuple[int, int, int]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, g = [], 0
    for (ep_index, chunk, file), e in zip(placement, eps):
        n = len(e.anns)
        rows.append({"episode_index": ep_index, "tasks": [e.instruction], "length": n, "data/chunk_index": chunk,
                     "data/file_index": file, "dataset_from_index": g, "dataset_to_index": g + n,
                     "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                     "source": e.source, "source_episode_id": e.source_episode_id})
        g += n
    path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def info_json(features: dict[str, dict], fps: int, episodes: int, frames: int, tasks: int) -> dict:
    """``meta/info.json`` as LeRobot 0.4.4's ``create_empty_dataset_info`` lays it out, totals filled in; every
    non-video feature carries ``fps`` (as the v2.1 -> v3.0 conversion writes it)."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": None,
        "total_episodes": episodes,
        "total_frames": frames,
        "total_tasks": tasks,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{episodes}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": {k: {**f, "fps": fps} for k, f in features.items()},
    }


def write_v30(root: Path, eps: list[_Episode], fps: int, features: dict[str, dict], rows: list[dict],
              variable: frozenset[str] = frozenset()) -> None:
    """A whole v3.0 dataset (no videos) from frame rows that hold every feature (``variable``: columns stored as
    plain lists)."""
    tasks = {t: i for i, t in enumerate(dict.fromkeys(e.instruction for e in eps))}
    _write_tasks(root, tasks)
    placement = _write_data(root, rows, features, variable)
    _write_episodes(root, eps, placement)
    _write_json(root / "meta" / "info.json", info_json(features, fps, len(eps), len(rows), len(tasks)))
    _write_json(root / "meta" / "stats.json", _stats(rows, features))


def export_v30(out_dir: Path, to: Path) -> ExportResult:
    from armdata.schemas.templates import TEMPLATES

    eps = _collect(out_dir)
    fps = _fps(out_dir)
    templates = TEMPLATES.names()
    tasks = {t: i for i, t in enumerate(dict.fromkeys(e.instruction for e in eps))}
    features = {**FRAME_FEATURES, **ANNOTATION_FEATURES}
    features.update({k: {"dtype": "string", "shape": [1], "names": None} for k in text_feature_names(templates)})
    rows = _frame_rows(eps, fps, tasks, templates)
    with staged_folder(to, overwrite=True) as tmp:
        write_v30(tmp, eps, fps, features, rows)
    files = sorted(str(p.relative_to(to)) for p in to.rglob("*") if p.is_file())
    return ExportResult(str(to), CODEBASE_VERSION, len(rows), len(eps), files)


# ------------------------------------------------------------------------------------------------------------
# MolmoAct2's depth companion


def rgb_patch_similarity(a: np.ndarray, b: np.ndarray, patch: int = MA2_PATCH) -> np.ndarray:
    """Cosine similarity of each ``patch`` x ``patch`` block of two HxWx3 images (over all its pixels and
    channels); a block whose norm is ~0 counts as similar (1.0), as MolmoAct2's generator counts it."""
    h, w = a.shape[0] // patch, a.shape[1] // patch

    def blocks(x):
        x = x[: h * patch, : w * patch].astype(np.float32)
        return x.reshape(h, patch, w, patch, -1).transpose(0, 2, 1, 3, 4).reshape(h, w, -1)

    pa_, pb = blocks(a), blocks(b)
    dot = (pa_ * pb).sum(-1)
    den = np.linalg.norm(pa_, axis=-1) * np.linalg.norm(pb, axis=-1)
    return np.where(den < 1e-8, 1.0, dot / (den + 1e-12)).astype(np.float32)


def depth_buffer(codes: list[list[int]], frames: list[np.ndarray], threshold: float = MA2_THRESHOLD,
                 size: int = MA2_VAE_IMAGE_SIZE) -> tuple[list[list[int]], list[list[bool]]]:
    """(buffer codes, updated masks) per frame: frame 0 sets every cell; later frames replace the cells whose
    resized picture changed (similarity below ``threshold``)."""
    import cv2

    g = size // MA2_PATCH
    small = [cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in frames]
    buf = np.asarray(codes[0], np.int16).reshape(g, g).copy()
    buffers, masks = [], []
    for i, c in enumerate(codes):
        grid = np.asarray(c, np.int16).reshape(g, g)
        if i == 0:
            mask = np.ones((g, g), bool)
        else:
            mask = rgb_patch_similarity(small[i - 1], small[i]) < threshold
            buf[mask] = grid[mask]
        buffers.append(buf.reshape(-1).tolist())
        masks.append(mask.reshape(-1).tolist())
    return buffers, masks


def _episode_frames(e: _Episode, source_reader) -> list[np.ndarray]:
    """The primary camera's frames of one episode: decoded from the source LeRobot videos when there is a
    reader, else the shards' images."""
    if source_reader is not None:
        ep = source_reader.read(e.key)
        return list(ep.frames[source_reader.source.cameras.primary])
    import cv2

    out = []
    for b in e.jpgs or []:
        img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ArmdataError(f"episode {e.source}/{e.key}: a primary image in the shards does not decode")
        out.append(img)
    return out


def _depth_columns(e: _Episode, source_reader) -> tuple[list, list, list]:
    codes = []
    for a in e.anns:
        if a.depth_codes is None or len(a.depth_codes) != MA2_GRID:
            raise ArmdataError(f"episode {e.source}/{e.key} step {a.step}: no depth codes; the companion needs "
                               f"{MA2_GRID} per frame")
        codes.append([int(c) for c in a.depth_codes])
    buffers, masks = depth_buffer(codes, _episode_frames(e, source_reader))
    return codes, buffers, masks


def _depth_vae(out_dir: Path, camera: str) -> dict:
    run = rd.read_run(out_dir)
    depth = (run.get("config") or {}).get("depth") or {}
    return {"vae_image_size": MA2_VAE_IMAGE_SIZE, "patch_size": MA2_PATCH,
            "grid_h": MA2_VAE_IMAGE_SIZE // MA2_PATCH, "grid_w": MA2_VAE_IMAGE_SIZE // MA2_PATCH,
            "num_tokens": 128, "cosine_threshold": MA2_THRESHOLD,
            "depth_encoder": str(depth.get("model") or "depth-anything"),
            "depth_input_size": int(depth.get("input_size") or 518), "image_key": camera}


def _lerobot_source(out_dir: Path):
    """The one LeRobot source of the output as a reader, or None when the output's source is not LeRobot."""
    from armdata.pipeline.sources.lerobot import LeRobotEpisodeReader
    from armdata.schemas.source import load_source

    srcs = _run_sources(out_dir)
    lr = [s for s in srcs if (Path(s.get("data_dir", "")) / "meta" / "info.json").is_file()]
    if not lr:
        return None
    if len(srcs) != 1:
        raise ArmdataError(f"{out_dir}: molmoact2-depth writes one companion per LeRobot dataset; this output has "
                           f"{len(srcs)} sources")
    if not (lr[0].get("file") and Path(lr[0]["file"]).is_file()):
        raise ArmdataError(f"{out_dir}: the source file {lr[0].get('file')!r} of {lr[0]['name']} is gone; the "
                           "companion needs it to find the camera the codes were made on")
    return LeRobotEpisodeReader(load_source(lr[0]["file"]))


def export_molmoact2_depth(out_dir: Path, to: Path) -> ExportResult:
    reader = _lerobot_source(out_dir)
    eps = _collect(out_dir, with_images=reader is None)
    with staged_folder(to, overwrite=True) as tmp:
        if reader is not None:
            rows = _companion_of_lerobot(out_dir, tmp, eps, reader)
        else:
            rows = _companion_of_export(out_dir, tmp, eps)
    files = sorted(str(p.relative_to(to)) for p in to.rglob("*") if p.is_file() or p.is_symlink())
    return ExportResult(str(to), "molmoact2-depth", rows, len(eps), files)


def _companion_info(info: dict, out_dir: Path, camera: str) -> dict:
    updated = dict(info)
    updated["features"] = {**info["features"], **MA2_FEATURES}
    updated["depth_vae"] = _depth_vae(out_dir, camera)
    return updated


def _companion_of_lerobot(out_dir: Path, root: Path, eps: list[_Episode], reader) -> int:
    """The generator's layout on the source dataset itself: its meta and data files, three columns appended."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from armdata.pipeline.sources.lerobot import column_array, episode_index_of

    ds = reader.check()
    by_index = {episode_index_of(e.key): e for e in eps}
    missing = [r.index for r in ds.episodes if r.index not in by_index]
    if missing:
        raise ArmdataError(f"dataset {ds.name}: episodes {missing[:10]} have no samples in {out_dir} (failed or "
                           "filtered); MolmoAct2's companion needs every row of the dataset")
    shutil.copytree(ds.root / "meta", root / "meta")
    if (ds.root / "README.md").exists():
        shutil.copy2(ds.root / "README.md", root / "README.md")
    if (ds.root / "videos").exists():
        os.symlink(ds.root / "videos", root / "videos")
    info = json.loads((ds.root / "meta" / "info.json").read_text())
    camera = reader.source.cameras.primary
    (root / "meta" / "info.json").write_text(json.dumps(_companion_info(info, out_dir, camera), indent=4) + "\n")
    columns = {i: _depth_columns(e, reader) for i, e in by_index.items()}
    total = 0
    for rel in sorted({r.data_path for r in ds.episodes}):
        table = pq.read_table(ds.root / rel)
        table = table.drop([c for c in MA2_FEATURES if c in table.column_names])
        ep, fr = column_array(table, "episode_index"), column_array(table, "frame_index")
        cols = [[columns[int(e)][j][int(f)] for e, f in zip(ep, fr)] for j in range(3)]
        table = table.append_column("depth_codes", pa.array(cols[0], type=pa.list_(pa.int16())))
        table = table.append_column("buffer_codes", pa.array(cols[1], type=pa.list_(pa.int16())))
        table = table.append_column("depth_updated_mask", pa.array(cols[2], type=pa.list_(pa.bool_())))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / rel)
        total += table.num_rows
    return total


def _companion_of_export(out_dir: Path, root: Path, eps: list[_Episode]) -> int:
    """For a non-LeRobot source: this exporter's v3.0 frame columns, the three columns added (same dtypes)."""
    fps = _fps(out_dir)
    tasks = {t: i for i, t in enumerate(dict.fromkeys(e.instruction for e in eps))}
    rows = _frame_rows(eps, fps, tasks, [], with_annotations=False)
    pos = 0
    for e in eps:
        codes, buffers, masks = e.depth
        for j in range(len(e.anns)):
            rows[pos].update(depth_codes=codes[j], buffer_codes=buffers[j], depth_updated_mask=masks[j])
            pos += 1
    features = {**FRAME_FEATURES, **{k: {x: v for x, v in f.items() if x != "description"}
                                     for k, f in MA2_FEATURES.items()}}
    write_v30(root, eps, fps, features, rows, variable=frozenset(MA2_FEATURES))
    info = json.loads((root / "meta" / "info.json").read_text())
    info = _companion_info(info, out_dir, "primary")
    info["features"] = {k: ({**f, "fps": fps} if k in MA2_FEATURES else f) for k, f in info["features"].items()}
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4) + "\n")
    return len(rows)


@register("lerobot")
class LeRobotExporter:
    """LeRobot v3.0 from a finished output (``v3.0``), or MolmoAct2's depth companion (``molmoact2-depth``)."""

    layouts = ("v3.0", "molmoact2-depth")

    def export(self, out_dir: Path, to: Path, layout: str) -> ExportResult:
        out_dir, to = Path(out_dir), Path(to)
        if layout == "molmoact2-depth":
            return export_molmoact2_depth(out_dir, to)
        if layout == "v3.0":
            return export_v30(out_dir, to)
        raise ArmdataError(f"lerobot has no layout {layout!r}; known: {', '.join(self.layouts)}")

