"""Read LeRobot datasets (codebase v2.1 and v3.0) from a local folder into ``schemas.records.Episode``.

The layout, as LeRobot 0.4.4 writes it (``src/lerobot/datasets/utils.py``, ``lerobot_dataset.py`` and the
v2.1 -> v3.0 conversion script ``src/lerobot/datasets/v30/convert_dataset_v21_to_v30.py``):

v3.0 (``meta/info.json`` ``codebase_version: "v3.0"``)
    data/chunk-{c:03d}/file-{f:03d}.parquet          many episodes per file, one row per frame
    videos/{video_key}/chunk-{c:03d}/file-{f:03d}.mp4 many episodes per file, one after the other
    meta/episodes/chunk-{c:03d}/file-{f:03d}.parquet  one row per episode: ``episode_index``, ``length``, ``tasks``,
        ``data/chunk_index``, ``data/file_index``, ``dataset_from_index``, ``dataset_to_index`` (global ``index``
        range, end exclusive), ``videos/{key}/chunk_index|file_index|from_timestamp|to_timestamp``
    meta/tasks.parquet                               ``task_index`` column, the task strings as the pandas index
v2.1 (``codebase_version: "v2.1"``)
    data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet   one file per episode
    videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4
    meta/episodes.jsonl (``episode_index``, ``tasks``, ``length``), meta/tasks.jsonl (``task_index``, ``task``)
    (``episode_chunk = episode_index // chunks_size``; the paths are the templates in info.json)

Every frame row has ``timestamp`` (seconds from the episode's start), ``frame_index``, ``episode_index``,
``index`` (global) and ``task_index``; the other columns are the non-video ``features`` of info.json. A video
feature's frame for a row is the frame at ``from_timestamp + timestamp`` of that episode's video file; LeRobot
accepts the nearest decoded frame when it is closer than ``tolerance_s`` and fails otherwise. armdata uses
``tolerance_s = 1/fps - 1e-4`` (the rule of LeRobot's ``MultiLeRobotDataset.tolerance_s`` and online buffer):
the nearest frame is then the only candidate, and a timestamp with no frame that close is a named error.

Episodes are decoded with PyAV (``av``; its wheels ship FFmpeg with H.264 and AV1 decoders), one episode's frames
in memory at a time. Feature names become field paths as they are (``observation.images.front``,
``observation.state``, ``action``); ``task_index`` as the instruction path means the episode's task text.

Episode keys are ``{split}-00000-{episode_index:06d}``: LeRobot's episode index is already global and stable,
and the form is the RLDS reader's ``{split}-{shard}-{record}`` with one shard, so an episode keeps its key
whichever of the two formats holds it. ``source_episode_id`` is ``{dataset folder name}/episode_{index}``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from armdata.schemas.errors import ArmdataError, RecordError, SourceFileError
from armdata.schemas.records import Episode
from armdata.schemas.source import EPISODE_METADATA, SourceConfig

logger = logging.getLogger(__name__)

INFO_PATH = "meta/info.json"
V30_EPISODES_DIR = "meta/episodes"
V30_TASKS_PATH = "meta/tasks.parquet"
V21_EPISODES_PATH = "meta/episodes.jsonl"
V21_TASKS_PATH = "meta/tasks.jsonl"
SUPPORTED_VERSIONS = ("v2.1", "v3.0")
# Columns every frame row has (LeRobot's DEFAULT_FEATURES).
FRAME_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
TASK_PATH = "task_index"  # as an instruction path: the episode's task text
_KEY_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-00000-(?P<index>\d{6,})$")


class LeRobotFormatError(ArmdataError):
    """The folder is not a LeRobot dataset armdata can read, or its metadata contradicts its files."""


def is_lerobot_dir(path: str | Path) -> bool:
    """A folder with ``meta/info.json`` (LeRobot's marker file)."""
    return (Path(path) / INFO_PATH).is_file()


def episode_key(index: int, split: str = "train") -> str:
    return f"{split}-00000-{index:06d}"


def episode_index_of(key: str) -> int:
    m = _KEY_RE.match(key)
    if not m:
        raise ValueError(f"{key!r} is not a LeRobot episode key ({{split}}-00000-{{episode_index:06d}})")
    return int(m.group("index"))


def tolerance_s(fps: float) -> float:
    """LeRobot's frame-matching tolerance at ``fps``: nearer than one frame interval, less a margin."""
    return 1.0 / float(fps) - 1e-4


@dataclass(frozen=True)
class VideoSpan:
    """Where one camera's frames of one episode are: the file (relative) and the episode's start time in it."""

    path: str
    from_timestamp: float
    to_timestamp: float | None = None


@dataclass(frozen=True)
class EpisodeRef:
    """One episode as the metadata describes it. ``index_from``/``index_to``: global ``index`` range (v3.0; end
    exclusive), None for v2.1 (the whole per-episode file)."""

    index: int
    length: int
    tasks: tuple[str, ...]
    data_path: str
    videos: dict[str, VideoSpan] = field(default_factory=dict)
    index_from: int | None = None
    index_to: int | None = None


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class LeRobotDataset:
    """The metadata of one local LeRobot dataset (info, tasks, episodes); reads nothing else until asked."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.name = self.root.name
        path = self.root / INFO_PATH
        if not path.is_file():
            raise LeRobotFormatError(f"{self.root}: not a LeRobot dataset (no {INFO_PATH})")
        try:
            self.info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise LeRobotFormatError(f"dataset {self.name}: {INFO_PATH} is not valid JSON: {e}") from None
        self.version = str(self.info.get("codebase_version", ""))
        if self.version not in SUPPORTED_VERSIONS:
            raise LeRobotFormatError(f"dataset {self.name}: codebase_version {self.version!r} is not one of "
                                     f"{', '.join(SUPPORTED_VERSIONS)}")
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise LeRobotFormatError(f"dataset {self.name}: {INFO_PATH} has no {key!r}")
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict] = self.info["features"]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "image"]

    @property
    def column_features(self) -> dict[str, dict]:
        """Features stored as parquet columns (everything but videos)."""
        return {k: f for k, f in self.features.items() if f.get("dtype") != "video"}

    @cached_property
    def tasks(self) -> dict[int, str]:
        """task_index -> task text."""
        if self.version == "v2.1":
            rows = _read_jsonl(self._need(V21_TASKS_PATH))
            return {int(r["task_index"]): str(r["task"]) for r in rows}
        import pyarrow.parquet as pq

        table = pq.read_table(self._need(V30_TASKS_PATH))
        cols = table.column_names
        # pandas writes the task strings (the frame's index) as `__index_level_0__` or as a named index column.
        text_col = "task" if "task" in cols else next((c for c in cols if c != "task_index"), None)
        if text_col is None or "task_index" not in cols:
            raise LeRobotFormatError(f"dataset {self.name}: {V30_TASKS_PATH} needs task_index and the task text; "
                                     f"it has {cols}")
        return {int(i): str(t) for i, t in zip(table.column("task_index").to_pylist(),
                                               table.column(text_col).to_pylist())}

    def _need(self, rel: str) -> Path:
        p = self.root / rel
        if not p.exists():
            raise LeRobotFormatError(f"dataset {self.name}: {rel} is missing")
        return p

    @cached_property
    def episodes(self) -> list[EpisodeRef]:
        """Every episode, by episode_index."""
        eps = self._episodes_v21() if self.version == "v2.1" else self._episodes_v30()
        return sorted(eps, key=lambda e: e.index)

    def _episodes_v21(self) -> list[EpisodeRef]:
        chunks = int(self.info.get("chunks_size", 1000))
        vpath = self.info.get("video_path")
        out = []
        for r in _read_jsonl(self._need(V21_EPISODES_PATH)):
            i = int(r["episode_index"])
            fmt = {"episode_chunk": i // chunks, "episode_index": i}
            videos = {k: VideoSpan(vpath.format(video_key=k, **fmt), 0.0) for k in self.video_keys} if vpath else {}
            out.append(EpisodeRef(i, int(r["length"]), tuple(r.get("tasks") or ()),
                                  self.info["data_path"].format(**fmt), videos))
        return out

    def _episodes_v30(self) -> list[EpisodeRef]:
        import pyarrow.parquet as pq

        files = sorted((self.root / V30_EPISODES_DIR).glob("chunk-*/file-*.parquet"))
        if not files:
            raise LeRobotFormatError(f"dataset {self.name}: no {V30_EPISODES_DIR}/chunk-*/file-*.parquet")
        vpath = self.info.get("video_path")
        out = []
        for f in files:
            for r in pq.read_table(f).to_pylist():
                try:
                    out.append(self._episode_row_v30(r, vpath))
                except KeyError as e:
                    raise LeRobotFormatError(f"dataset {self.name}: {f.relative_to(self.root)} lacks column {e} "
                                             f"(episode {r.get('episode_index')})") from None
        return out

    def _episode_row_v30(self, r: dict, vpath: str | None) -> EpisodeRef:
        data = self.info["data_path"].format(chunk_index=int(r["data/chunk_index"]),
                                             file_index=int(r["data/file_index"]))
        videos = {}
        for k in self.video_keys:
            p = f"videos/{k}/"
            videos[k] = VideoSpan(vpath.format(video_key=k, chunk_index=int(r[p + "chunk_index"]),
                                               file_index=int(r[p + "file_index"])),
                                  float(r[p + "from_timestamp"]), float(r[p + "to_timestamp"]))
        return EpisodeRef(int(r["episode_index"]), int(r["length"]), tuple(r.get("tasks") or ()), data, videos,
                          int(r["dataset_from_index"]), int(r["dataset_to_index"]))

    def episode(self, index: int) -> EpisodeRef:
        ref = self._by_index.get(index)
        if ref is None:
            raise LeRobotFormatError(f"dataset {self.name}: no episode {index} in its metadata")
        return ref

    @cached_property
    def _by_index(self) -> dict[int, EpisodeRef]:
        return {e.index: e for e in self.episodes}

    def first_data_file(self) -> Path | None:
        return (self.root / self.episodes[0].data_path) if self.episodes else None


# ------------------------------------------------------------------------------------------------------------
# parquet columns


def _arrow_matches(feature: dict, arrow_type) -> bool:
    """Whether a parquet column type holds what an info.json features entry says (dtype and width)."""
    import pyarrow as pa

    dtype, shape = feature.get("dtype"), tuple(feature.get("shape") or ())
    if dtype == "image":
        return pa.types.is_struct(arrow_type)
    width = int(np.prod(shape)) if shape else 1
    inner = arrow_type
    n = None
    while pa.types.is_list(inner) or pa.types.is_fixed_size_list(inner) or pa.types.is_large_list(inner):
        if pa.types.is_fixed_size_list(inner):
            n = inner.list_size if n is None else n * inner.list_size
        inner = inner.value_type
    if inner == arrow_type and width != 1:
        return False
    if n is not None and n != width:
        return False
    if dtype == "string":
        return pa.types.is_string(inner) or pa.types.is_large_string(inner)
    if dtype == "bool":
        return pa.types.is_boolean(inner)
    try:
        return inner == pa.from_numpy_dtype(np.dtype(dtype))
    except TypeError:
        return False


def check_schema(ds: LeRobotDataset, schema, rel_path: str) -> str | None:
    """The first features entry of info.json that the parquet schema contradicts, as a message; None if all match."""
    names = set(schema.names)
    for key, feat in ds.column_features.items():
        if key not in names:
            return f"features entry {key!r} ({feat.get('dtype')} {feat.get('shape')}) has no column in {rel_path}"
        typ = schema.field(key).type
        if not _arrow_matches(feat, typ):
            return (f"features entry {key!r} says {feat.get('dtype')} shape {tuple(feat.get('shape') or ())} but "
                    f"{rel_path} stores it as {typ}")
    return None


def column_array(table, name: str) -> np.ndarray:
    """A (possibly list-typed) column as a numpy array [rows, ...]."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return np.asarray(col.to_pylist(), dtype=object)
    shape: list[int] = []
    arr = col
    while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type) or pa.types.is_large_list(arr.type):
        arr = arr.flatten()
    values = arr.to_numpy(zero_copy_only=False)
    rows = len(col)
    if rows and values.size % rows == 0:
        shape = [rows, values.size // rows] if values.size != rows else [rows]
    return values.reshape(shape) if shape else values


# ------------------------------------------------------------------------------------------------------------
# video


def decode_at_timestamps(path: Path, timestamps: np.ndarray, tol: float) -> tuple[list[np.ndarray], list[int]]:
    """Frames of ``path`` nearest each timestamp (seconds, ascending), as uint8 [H, W, 3] RGB; also the indices of
    timestamps with no frame nearer than ``tol`` (their slot holds None). Decodes from the keyframe before the first
    timestamp to the first frame past the last, keeping only the frames some timestamp is nearest to."""
    import av

    ts = np.asarray(timestamps, np.float64)
    first, last = float(ts.min()), float(ts.max())
    best: list[tuple[float, np.ndarray] | None] = [None] * len(ts)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if first > tol:
            container.seek(int(max(0.0, first - tol) / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base)
            if t < first - tol:
                continue
            if t > last + tol:
                break
            near = np.flatnonzero(np.abs(ts - t) < tol)
            if near.size:
                img = frame.to_ndarray(format="rgb24")
                for i in near:
                    d = abs(ts[i] - t)
                    if best[i] is None or d < best[i][0]:
                        best[i] = (d, img)
    frames = [b[1] if b is not None else None for b in best]
    missing = [i for i, b in enumerate(best) if b is None]
    return frames, missing


# ------------------------------------------------------------------------------------------------------------
# episodes


def _field_error(src: str, key: str, step: int | None, fld: str, kind: str, msg: str) -> RecordError:
    return RecordError(src, key, step, fld, kind, msg)


class _DataFile:
    """One open data parquet file: its row count, its first global ``index``, and rows read by row group (a v3.0
    file of ~100 MB holds many episodes; an episode needs only its own row groups in memory)."""

    def __init__(self, pf):
        self.pf = pf
        meta = pf.metadata
        self.num_rows = meta.num_rows
        self.group_starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        first = pf.read_row_group(0, columns=["index"]) if meta.num_row_groups else None
        self.first_index = int(first.column("index")[0].as_py()) if first is not None and first.num_rows else 0

    def rows(self, lo: int, hi: int):
        """Rows [lo, hi) of the file."""
        groups = [i for i in range(len(self.group_starts) - 1)
                  if self.group_starts[i] < hi and self.group_starts[i + 1] > lo]
        if not groups:
            return self.pf.schema_arrow.empty_table()
        table = self.pf.read_row_groups(groups)
        return table.slice(lo - int(self.group_starts[groups[0]]), hi - lo)


class LeRobotEpisodeReader:
    """Reads one source's LeRobot episodes into Episodes. Picklable (opens the metadata lazily, once per process),
    so a Beam DoFn can hold one; keeps the last data file read, since a v3.0 file holds many episodes."""

    def __init__(self, source: SourceConfig):
        self.source = source
        self._table_cache: tuple[str, Any] | None = None

    def __getstate__(self):
        return {"source": self.source}

    def __setstate__(self, state):
        self.source = state["source"]
        self._table_cache = None

    @cached_property
    def dataset(self) -> LeRobotDataset:
        from armdata.pipeline.sources.rlds import DataLocationError

        d = self.source.data_dir()
        if not Path(d).is_dir():
            raise DataLocationError(f"source {self.source.name}: no LeRobot dataset folder at {d!r} "
                                    f"(from {self.source.origin or 'its source file'})")
        return LeRobotDataset(d)

    def check(self) -> LeRobotDataset:
        """Open the metadata and check the source file against the features (typos name the setting and what
        exists) and the first data file against the features; returns the dataset."""
        ds = self.dataset
        known = sorted(set(ds.features) | {TASK_PATH})
        for setting, path in self.source.step_paths().items():
            if path.startswith(EPISODE_METADATA):
                if path[len(EPISODE_METADATA):] != "tasks":
                    raise SourceFileError(self.source.origin or self.source.name, setting,
                                          f"no field {path!r} in the data", [EPISODE_METADATA + "tasks"])
            elif path not in ds.features and path not in FRAME_COLUMNS:
                raise SourceFileError(self.source.origin or self.source.name, setting,
                                      f"no feature {path!r} in dataset {ds.name}", known)
        first = ds.first_data_file()
        if first is not None and first.exists():
            import pyarrow.parquet as pq

            msg = check_schema(ds, pq.read_schema(first), str(first.relative_to(ds.root)))
            if msg:
                raise LeRobotFormatError(f"dataset {ds.name}: {msg}")
        self._split_range()
        return ds

    def episode_keys(self) -> list[str]:
        """The keys of the source's split: info.json ``splits`` maps a name to an episode range ``"start:end"``
        (LeRobot writes ``{"train": "0:N"}``); a dataset without ``splits`` is all ``train``."""
        lo, hi = self._split_range()
        return [episode_key(e.index, self.source.data.split) for e in self.dataset.episodes if lo <= e.index < hi]

    def _split_range(self) -> tuple[int, int]:
        from armdata.pipeline.sources.rlds import DataLocationError

        ds, split = self.dataset, self.source.data.split
        splits = ds.info.get("splits") or {"train": f"0:{len(ds.episodes)}"}
        if split not in splits:
            raise DataLocationError(f"source {self.source.name}: unknown split {split!r} in dataset {ds.name}; "
                                    f"splits that exist: {', '.join(sorted(splits))}")
        try:
            lo, hi = (int(x) for x in str(splits[split]).split(":"))
        except ValueError:
            raise LeRobotFormatError(f"dataset {ds.name}: split {split!r} is {splits[split]!r}, not 'start:end'") from None
        return lo, hi

    def _data_file(self, rel: str, key: str) -> _DataFile:
        """The data file's handle, checked against the features once per file (the last one is kept)."""
        import pyarrow.parquet as pq

        if self._table_cache is not None and self._table_cache[0] == rel:
            return self._table_cache[1]
        ds, path = self.dataset, self.dataset.root / rel
        if not path.exists():
            raise _field_error(self.source.name, key, None, rel, "missing_file",
                               f"dataset {ds.name}: data file {rel} is missing")
        pf = pq.ParquetFile(path)
        msg = check_schema(ds, pf.schema_arrow, rel)
        if msg:
            raise _field_error(self.source.name, key, None, rel, "schema_mismatch", f"dataset {ds.name}: {msg}")
        df = _DataFile(pf)
        self._table_cache = (rel, df)
        return df

    def _episode_rows(self, ref: EpisodeRef, key: str):
        """The episode's rows of its data file (only the row groups that hold them are read), checked against the
        metadata: the index range lies inside the file, every row is this episode's, frame_index runs 0..length-1."""
        ds, src = self.dataset, self.source.name
        df = self._data_file(ref.data_path, key)
        if ref.index_from is None:
            table = df.rows(0, df.num_rows)
        else:
            lo, hi = ref.index_from - df.first_index, ref.index_to - df.first_index
            if lo < 0 or hi > df.num_rows or hi - lo != ref.length:
                last = df.first_index + df.num_rows - 1
                raise _field_error(src, key, max(0, df.num_rows - lo) if lo >= 0 else None, "dataset_to_index",
                                   "row_range", f"dataset {ds.name} episode {ref.index}: rows index {ref.index_from}.."
                                   f"{ref.index_to - 1} ({ref.length} frames) run past {ref.data_path}, which holds "
                                   f"index {df.first_index}..{last}")
            table = df.rows(lo, hi)
        ep = column_array(table, "episode_index")
        bad = np.flatnonzero(ep != ref.index)
        if bad.size:
            raise _field_error(src, key, int(bad[0]), "episode_index", "row_range",
                               f"dataset {ds.name} episode {ref.index}: row {int(bad[0])} of its range in "
                               f"{ref.data_path} belongs to episode {int(ep[bad[0]])}")
        fi = column_array(table, "frame_index")
        if table.num_rows != ref.length or not np.array_equal(fi, np.arange(table.num_rows)):
            raise _field_error(src, key, None, "frame_index", "row_range",
                               f"dataset {ds.name} episode {ref.index}: {table.num_rows} rows in {ref.data_path} "
                               f"with frame_index {fi[:3].tolist()}..., metadata says length {ref.length}")
        return table

    def _frames(self, ref: EpisodeRef, cam: str, timestamps: np.ndarray, key: str, table=None) -> np.ndarray:
        ds, src = self.dataset, self.source.name
        if cam in ds.image_keys:
            return self._parquet_images(ref, cam, key, table if table is not None else self._episode_rows(ref, key))
        span = ref.videos.get(cam)
        if span is None:
            raise _field_error(src, key, None, cam, "missing_field", f"dataset {ds.name}: {cam} is not a video feature")
        path = ds.root / span.path
        if not path.exists():
            raise _field_error(src, key, None, cam, "missing_video",
                               f"dataset {ds.name} episode {ref.index}: video file {span.path} is missing")
        query = span.from_timestamp + timestamps.astype(np.float64)
        tol = tolerance_s(ds.fps)
        try:
            frames, missing = decode_at_timestamps(path, query, tol)
        except Exception as e:  # PyAV raises its own error types for unreadable files
            raise _field_error(src, key, None, cam, "unreadable_video",
                               f"dataset {ds.name} episode {ref.index}: {span.path}: {type(e).__name__}: {e}") from None
        if missing:
            t = missing[0]
            raise _field_error(src, key, t, cam, "frame_not_found",
                               f"dataset {ds.name} episode {ref.index} frame {t}: no frame of {span.path} within "
                               f"{tol:.4f} s of timestamp {query[t]:.4f} s ({len(missing)} frames missing)")
        return np.stack(frames)

    def _parquet_images(self, ref: EpisodeRef, cam: str, key: str, table) -> np.ndarray:
        """An image feature (``dtype: image``): datasets' Image struct per row, ``bytes`` (PNG/JPEG) or ``path``
        (relative to the dataset)."""
        import io

        from PIL import Image

        ds, out = self.dataset, []
        for t, cell in enumerate(table.column(cam).to_pylist()):
            try:
                data = (cell or {}).get("bytes") or (ds.root / cell["path"]).read_bytes()
                out.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
            except Exception as e:  # a missing or undecodable image is this frame's error
                raise _field_error(self.source.name, key, t, cam, "bad_image",
                                   f"dataset {ds.name} episode {ref.index} frame {t}: {type(e).__name__}: {e}") from None
        return np.stack(out)

    def read(self, key: str) -> Episode:
        """One episode by key -> Episode. Raises RecordError naming the source, episode, frame and field."""
        src = self.source
        ds = self.dataset
        try:
            ref = ds.episode(episode_index_of(key))
        except (ValueError, LeRobotFormatError) as e:
            raise _field_error(src.name, key, None, "episode_index", "unknown_episode", str(e)) from None
        if ref.length == 0:
            raise _field_error(src.name, key, None, "length", "empty_episode", "the episode has 0 steps")
        table = self._episode_rows(ref, key)
        timestamps = column_array(table, "timestamp")
        cams = [src.cameras.primary, *src.cameras.extra] + ([src.cameras.wrist] if src.cameras.wrist else [])
        frames = {cam: self._frames(ref, cam, timestamps, key, table) for cam in cams}

        def group(paths: list[str]) -> dict[str, np.ndarray]:
            return {p: column_array(table, p) for p in paths}

        action_paths = sorted({seg.path for seg in src.action.arm} | {src.action.gripper.path})
        state_paths = list(src.state.keys)
        if src.state.eef_position and src.state.eef_position.path not in state_paths:
            state_paths.append(src.state.eef_position.path)
        other = [src.cameras.depth] if src.cameras.depth else []
        metadata = {"episode_index": np.int64(ref.index), "tasks": list(ref.tasks), "dataset": ds.name,
                    "codebase_version": ds.version}
        return Episode(
            source=src.name,
            episode_key=key,
            frames=frames,
            actions_raw=group(action_paths),
            state=group(state_paths),
            instruction=self._instruction(ref, table),
            steps=group(other),
            metadata=metadata,
            source_episode_id=f"{ds.name}/episode_{ref.index}",
        )

    def _instruction(self, ref: EpisodeRef, table) -> str:
        path = self.source.instruction.path
        if path == TASK_PATH:
            tasks = self.dataset.tasks
            for i in column_array(table, TASK_PATH):
                text = tasks.get(int(i), "")
                if text.strip():
                    return text
            return ""
        if path == EPISODE_METADATA + "tasks":
            return next((t for t in ref.tasks if t.strip()), "")
        values = column_array(table, path)
        return next((str(v) for v in values if str(v).strip()), "")


def read_episodes_or_errors(source: SourceConfig, limit: int | None = None) -> Iterator[Episode | RecordError]:
    """Every episode of a LeRobot source in episode order (local, single process); bad ones as RecordError."""
    reader = LeRobotEpisodeReader(source)
    reader.check()
    for i, key in enumerate(reader.episode_keys()):
        if limit is not None and i >= limit:
            return
        try:
            yield reader.read(key)
        except RecordError as e:
            yield e


def data_digest(source: SourceConfig) -> str:
    """A hash of the dataset's metadata files (info, episodes, tasks): it changes whenever the data is rewritten."""
    import hashlib

    root = Path(source.data_dir())
    ds = LeRobotDataset(root)
    h = hashlib.sha256()
    rels = [INFO_PATH, V21_EPISODES_PATH, V21_TASKS_PATH, V30_TASKS_PATH]
    rels += sorted(str(p.relative_to(root)) for p in (root / V30_EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    for rel in rels:
        p = root / rel
        if p.exists():
            h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(ds.version.encode())
    return h.hexdigest()
