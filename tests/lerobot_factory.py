"""Write small LeRobot datasets (codebase v3.0 and v2.1) for tests, from the format as LeRobot 0.4.4 writes it.

The layout was read from huggingface/lerobot at tag v0.4.4 (no code copied; the package cannot be installed
beside our torch):
- paths: ``src/lerobot/datasets/utils.py`` lines 54-71 (``INFO_PATH``, ``DEFAULT_DATA_PATH``,
  ``DEFAULT_VIDEO_PATH``, ``DEFAULT_EPISODES_PATH``, ``DEFAULT_TASKS_PATH``, legacy ``meta/episodes.jsonl`` and
  ``meta/tasks.jsonl``); v2.1 templates from tag v0.3.3 ``utils.py`` lines 54-55;
- the frame columns ``timestamp`` float32, ``frame_index``/``episode_index``/``index``/``task_index`` int64:
  ``DEFAULT_FEATURES``, ``utils.py`` lines 73-79;
- info.json keys: ``create_empty_dataset_info``, ``utils.py`` lines 795-831; video ``info``: ``get_video_info``,
  ``video_utils.py`` lines 976-1008; every non-video feature carries ``fps`` (``convert_info`` of
  ``v30/convert_dataset_v21_to_v30.py`` lines 428-445);
- episode rows (``episode_index``, ``tasks``, ``length``, ``data/chunk_index``, ``data/file_index``,
  ``dataset_from_index``, ``dataset_to_index``, ``videos/{key}/chunk_index|file_index|from_timestamp|to_timestamp``,
  ``meta/episodes/chunk_index|file_index``): ``lerobot_dataset.py`` lines 328-397, 1475-1483, 1575-1582;
- tasks: a pandas frame with a ``task_index`` column indexed by the task text, ``to_parquet``
  (``convert_tasks``, conversion script lines 168-174); an episode's video is appended after the previous one in
  the same file and its ``from_timestamp`` is the file's duration before it (``_save_episode_video``).

Videos are encoded with PyAV (H.264 via libx264 by default; AV1 via libsvtav1, the encoder PyAV's FFmpeg ships),
tiny and short so tests stay fast. Frames are smooth pictures with a moving marker, so codec loss is small and a
frame taken from the wrong timestamp is visibly wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_HW = (48, 64)
CAMERAS = ("observation.images.front", "observation.images.wrist")
TASKS = ("put the carrot in the pot", "open the top drawer", "push the green cube left")


@dataclass
class LrEpisode:
    index: int
    task: str
    frames: dict[str, np.ndarray]  # camera -> uint8 [T, H, W, 3] as encoded
    action: np.ndarray  # float32 [T, 7]: xyz rpy deltas, gripper 1 = open
    state: np.ndarray  # float32 [T, 7]

    @property
    def length(self) -> int:
        return int(self.action.shape[0])


@dataclass
class LrDataset:
    root: Path
    version: str
    fps: int
    codec: str
    episodes: list[LrEpisode]
    video_files: dict[int, dict[str, tuple[str, int]]] = field(default_factory=dict)  # ep -> cam -> (file, offset)

    def source(self, name: str = "lr", **extra) -> dict[str, Any]:
        """A source mapping for this dataset (the same meaning as ``rlds_twin``'s)."""
        src = {
            "name": name,
            "data": {"dir": str(self.root), "format": "lerobot"},
            "cameras": {"primary": CAMERAS[0], "wrist": CAMERAS[1]},
            "instruction": {"path": "task_index"},
            "action": {
                "arm": [{"path": "action", "index": [0, 1, 2, 3, 4, 5]}],
                "gripper": {"path": "action", "index": 6, "mode": "absolute"},
                "raw_width": {"action": 7},
            },
            "state": {"keys": ["observation.state"]},
            "control_hz": float(self.fps),
        }
        src.update(extra)
        return src


def make_episodes(num_episodes: int = 4, lengths: list[int] | None = None, seed: int = 0) -> list[LrEpisode]:
    rng = np.random.default_rng(seed)
    lengths = lengths or [5 + (i % 3) for i in range(num_episodes)]
    h, w = IMAGE_HW
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i, t in enumerate(lengths):
        frames = {}
        for c, cam in enumerate(CAMERAS):
            base = np.stack([(xx * 3 + 40 * c + 20 * i) % 200, (yy * 4 + 30 * i) % 200,
                             np.full_like(xx, 60 + 30 * c)], -1).astype(np.uint8)
            seq = np.repeat(base[None], t, 0).copy()
            for s in range(t):  # a bright marker that moves one step per frame
                y0, x0 = 4 + (3 * s) % (h - 12), 4 + (5 * s + 7 * c) % (w - 12)
                seq[s, y0:y0 + 8, x0:x0 + 8] = 250
            frames[cam] = seq
        arm = rng.normal(0, 0.02, size=(t, 6)).astype(np.float32)
        grip = np.ones((t, 1), np.float32)
        grip[t // 2:] = 0.0
        out.append(LrEpisode(i, TASKS[i % len(TASKS)], frames, np.concatenate([arm, grip], 1),
                             rng.normal(0, 0.1, size=(t, 7)).astype(np.float32)))
    return out


# ------------------------------------------------------------------------------------------------------------
# pieces


def encode_video(path: Path, frames: np.ndarray, fps: int, codec: str = "libx264") -> None:
    """Frames -> an mp4 with pts 0, 1, 2, ... in units of 1/fps (yuv420p, short GOP so seeking matters)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    opts = {"g": "2", "crf": "12"}
    if codec == "libsvtav1":
        opts["preset"] = "12"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream(codec, rate=fps, options=opts)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def decode_all(path: Path) -> np.ndarray:
    """Every frame of a video in decode order (the independent reference the reader is checked against)."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def _png(img: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _frame_table(eps: list[LrEpisode], fps: int, first_index: int, task_index: dict[str, int],
                 image_cameras: tuple[str, ...] = ()):
    """Frame rows; cameras in ``image_cameras`` are stored in the parquet as datasets' Image struct (PNG bytes),
    as LeRobot stores image (not video) features."""
    import pyarrow as pa

    rows = {k: [] for k in ("action", "observation.state", "timestamp", "frame_index", "episode_index", "index",
                            "task_index")}
    g = first_index
    for ep in eps:
        for t in range(ep.length):
            rows["action"].append(ep.action[t].tolist())
            rows["observation.state"].append(ep.state[t].tolist())
            rows["timestamp"].append(t / fps)
            rows["frame_index"].append(t)
            rows["episode_index"].append(ep.index)
            rows["index"].append(g)
            rows["task_index"].append(task_index[ep.task])
            g += 1
    vec = pa.list_(pa.float32(), 7)  # datasets' Sequence(length=7, float32) in arrow
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets' Image() in arrow
    for cam in image_cameras:
        rows[cam] = [{"bytes": _png(ep.frames[cam][t]), "path": None} for ep in eps for t in range(ep.length)]
    schema = pa.schema([*((cam, image) for cam in image_cameras),("action", vec), ("observation.state", vec), ("timestamp", pa.float32()),
                        ("frame_index", pa.int64()), ("episode_index", pa.int64()), ("index", pa.int64()),
                        ("task_index", pa.int64())])
    return pa.Table.from_pydict(rows, schema=schema)


def _features(fps: int, codec_name: str, image_cameras: tuple[str, ...] = ()) -> dict:
    h, w = IMAGE_HW
    feats: dict[str, dict] = {}
    for cam in CAMERAS:
        if cam in image_cameras:
            feats[cam] = {"dtype": "image", "shape": [h, w, 3], "names": ["height", "width", "channels"]}
            continue
        feats[cam] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                      "info": {"video.height": h, "video.width": w, "video.codec": codec_name,
                               "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                               "video.channels": 3, "has_audio": False}}
    names7 = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    feats["action"] = {"dtype": "float32", "shape": [7], "names": names7, "fps": fps}
    feats["observation.state"] = {"dtype": "float32", "shape": [7], "names": names7, "fps": fps}
    for k, dt in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                  ("index", "int64"), ("task_index", "int64")):
        feats[k] = {"dtype": dt, "shape": [1], "names": None, "fps": fps}
    return feats


def _stats(eps: list[LrEpisode]) -> dict:
    out = {}
    for key, get in (("action", lambda e: e.action), ("observation.state", lambda e: e.state)):
        a = np.concatenate([get(e) for e in eps]).astype(np.float64)
        out[key] = {"min": a.min(0).tolist(), "max": a.max(0).tolist(), "mean": a.mean(0).tolist(),
                    "std": a.std(0).tolist(), "count": [len(a)]}
    return out


def _info(version: str, eps: list[LrEpisode], fps: int, codec_name: str, tasks: list[str],
          image_cameras: tuple[str, ...] = ()) -> dict:
    info = {
        "codebase_version": version, "robot_type": "test_arm", "total_episodes": len(eps),
        "total_frames": sum(e.length for e in eps), "total_tasks": len(tasks), "chunks_size": 1000,
        "fps": fps, "splits": {"train": f"0:{len(eps)}"}, "features": _features(fps, codec_name, image_cameras),
    }
    if version == "v3.0":
        info.update(data_files_size_in_mb=100, video_files_size_in_mb=200,
                    data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                    video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")
    else:
        info.update(total_chunks=1, total_videos=len(eps) * len(CAMERAS),
                    data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                    video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4")
    return info


# ------------------------------------------------------------------------------------------------------------
# datasets


def write_v30(root: str | Path, episodes: list[LrEpisode], *, fps: int = 10, codec: str = "libx264",
              episodes_per_file: int = 2, image_cameras: tuple[str, ...] = ()) -> LrDataset:
    """A v3.0 dataset: ``episodes_per_file`` episodes per data file and per video file (two cameras; those in
    ``image_cameras`` stored as PNG in the parquet instead of video)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    tasks = list(dict.fromkeys(e.task for e in episodes))
    task_index = {t: i for i, t in enumerate(tasks)}
    out = LrDataset(root, "v3.0", fps, codec, episodes)
    ep_rows, g = [], 0
    for f, start in enumerate(range(0, len(episodes), episodes_per_file)):
        group = episodes[start:start + episodes_per_file]
        path = root / f"data/chunk-000/file-{f:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        # One row group per episode, as LeRobot's ParquetWriter writes one table per saved episode.
        first = g
        tables = []
        for e in group:
            tables.append(_frame_table([e], fps, first, task_index, image_cameras))
            first += e.length
        with pq.ParquetWriter(path, tables[0].schema) as w:
            for t in tables:
                w.write_table(t)
        offsets = np.cumsum([0] + [e.length for e in group])
        for cam in (c for c in CAMERAS if c not in image_cameras):
            rel = f"videos/{cam}/chunk-000/file-{f:03d}.mp4"
            encode_video(root / rel, np.concatenate([e.frames[cam] for e in group]), fps, codec)
            for e, off in zip(group, offsets):
                out.video_files.setdefault(e.index, {})[cam] = (rel, int(off))
        for e, off in zip(group, offsets):
            row = {"episode_index": e.index, "tasks": [e.task], "length": e.length, "data/chunk_index": 0,
                   "data/file_index": f, "dataset_from_index": g, "dataset_to_index": g + e.length}
            for cam in (c for c in CAMERAS if c not in image_cameras):
                row.update({f"videos/{cam}/chunk_index": 0, f"videos/{cam}/file_index": f,
                            f"videos/{cam}/from_timestamp": off / fps,
                            f"videos/{cam}/to_timestamp": (off + e.length) / fps})
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            ep_rows.append(row)
            g += e.length
    meta = root / "meta"
    (meta / "episodes/chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), meta / "episodes/chunk-000/file-000.parquet")
    pd.DataFrame({"task_index": list(range(len(tasks)))}, index=tasks).to_parquet(meta / "tasks.parquet")
    codec_name = "h264" if codec == "libx264" else "av1"
    (meta / "info.json").write_text(json.dumps(_info("v3.0", episodes, fps, codec_name, tasks, image_cameras),
                                               indent=4))
    (meta / "stats.json").write_text(json.dumps(_stats(episodes), indent=4))
    return out


def write_v21(root: str | Path, episodes: list[LrEpisode], *, fps: int = 10, codec: str = "libx264") -> LrDataset:
    """A v2.1 dataset: one parquet and one mp4 per camera per episode, jsonl metadata."""
    import pyarrow.parquet as pq

    root = Path(root)
    tasks = list(dict.fromkeys(e.task for e in episodes))
    task_index = {t: i for i, t in enumerate(tasks)}
    out = LrDataset(root, "v2.1", fps, codec, episodes)
    g = 0
    for e in episodes:
        path = root / f"data/chunk-000/episode_{e.index:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_frame_table([e], fps, g, task_index), path)
        g += e.length
        for cam in CAMERAS:
            rel = f"videos/chunk-000/{cam}/episode_{e.index:06d}.mp4"
            encode_video(root / rel, e.frames[cam], fps, codec)
            out.video_files.setdefault(e.index, {})[cam] = (rel, 0)
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"episode_index": e.index, "tasks": [e.task], "length": e.length}) for e in episodes]
    (meta / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    (meta / "tasks.jsonl").write_text("\n".join(json.dumps({"task_index": i, "task": t})
                                                for i, t in enumerate(tasks)) + "\n")
    stats = [json.dumps({"episode_index": e.index, "stats": _stats([e])}) for e in episodes]
    (meta / "episodes_stats.jsonl").write_text("\n".join(stats) + "\n")
    codec_name = "h264" if codec == "libx264" else "av1"
    (meta / "info.json").write_text(json.dumps(_info("v2.1", episodes, fps, codec_name, tasks), indent=4))
    return out


def decoded_frames(ds: LrDataset) -> dict[int, dict[str, np.ndarray]]:
    """Each episode's frames as PyAV decodes the written files on its own (whole file, in order, sliced)."""
    cache: dict[str, np.ndarray] = {}
    out: dict[int, dict[str, np.ndarray]] = {}
    for e in ds.episodes:
        for cam, (rel, off) in ds.video_files[e.index].items():
            if rel not in cache:
                cache[rel] = decode_all(ds.root / rel)
            out.setdefault(e.index, {})[cam] = cache[rel][off:off + e.length]
    return out


def rlds_twin(root: str | Path, ds: LrDataset, name: str = "lr") -> tuple[Path, dict[str, Any]]:
    """The same episodes written as RLDS (PNG, so lossless) with the frames PyAV decodes from the LeRobot videos,
    in episode order in one shard; returns the builder dir and a source mapping with the same meaning."""
    import tensorflow_datasets as tfds

    from rlds_factory import write_rlds

    h, w = IMAGE_HW
    img = tfds.features.Image(shape=(h, w, 3), dtype=np.uint8, encoding_format="png")
    features = tfds.features.FeaturesDict({
        "steps": tfds.features.Dataset({
            "observation": tfds.features.FeaturesDict({"front": img, "wrist": img,
                                                      "state": tfds.features.Tensor(shape=(7,), dtype=np.float32)}),
            "action": tfds.features.Tensor(shape=(7,), dtype=np.float32),
            "language_instruction": tfds.features.Text(),
        }),
    })
    frames = decoded_frames(ds)
    examples = []
    for e in ds.episodes:
        steps = [{"observation": {"front": frames[e.index][CAMERAS[0]][t], "wrist": frames[e.index][CAMERAS[1]][t],
                                  "state": e.state[t]},
                  "action": e.action[t], "language_instruction": e.task} for t in range(e.length)]
        examples.append({"steps": steps})
    builder = write_rlds(root, name, features, examples)
    src = ds.source(name)
    src.update(data={"dir": str(builder)}, cameras={"primary": "observation/front", "wrist": "observation/wrist"},
               instruction={"path": "language_instruction"}, state={"keys": ["observation/state"]})
    return builder, src
