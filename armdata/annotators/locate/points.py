"""Points tables: located gripper points, one row per point, as a locator input.

A points table says where the end effector was seen in a few frames of a source (a pointing VLM's answers from
``armdata locate``, a detector's, a person's clicks, or ECoT's released Bridge gripper positions). The fit
locator fits the camera to them; nothing here looks at images.

Row contract (JSON Lines: one object per line; Parquet: one row per point, the same columns):

    episode     str    the episode's ``episode_metadata/file_path`` where the source has one, else armdata's
                       episode key (``train-00000-000003``)
    episode_id  str    optional: ``episode_metadata/episode_id``, for sources whose file_path is shared by several
                       episodes (BridgeData V2 keeps many episodes in one ``out.npy``)
    step        int    0-based step in the episode
    u, v        float  pixel of the gripper in the primary camera image at its stored size (u right, v down)
    confidence  float  optional, in [0, 1] (default 1)
    image_width, image_height   optional: the size of the image the point was given on, when it is not the stored
                       size (ECoT's Bridge positions are on 256x256 frames); points are rescaled to the stored size
    method      str    optional: what produced the point (``pointer``, ``detector``, ``ecot``, ``human``)

ECoT's ``embodied_features_bridge.json`` (Hugging Face dataset ``Embodied-CoT/embodied_features_bridge``) is read
directly. Its layout, as ECoT's own readers index it:
``{file_path: {episode_id (str): {"metadata": {...}, "features": {"gripper_position": [[x, y], ...] one per step,
"move_primitive": [...], "bboxes": [...]}, "reasoning": {step (str): {...}}}}}``; ``file_path`` is Bridge's
``episode_metadata/file_path`` and the inner key its ``episode_metadata/episode_id``. Positions are pixels on the
256x256 frames ECoT's detector (OWLv2 + SAM, then a RANSAC line fit) ran on; a position that is missing, not two
finite numbers, or negative (no detection) is dropped and counted.

Bad rows never stop a read: each is dropped, counted and described (file, line, field) in ``problems``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from armdata.schemas.errors import ArmdataError

#: Columns of a points table, in the order armdata writes them.
COLUMNS = ("episode", "episode_id", "step", "u", "v", "confidence", "image_width", "image_height", "method")
#: ECoT's Bridge positions are pixels of 256x256 frames.
ECOT_IMAGE_SIZE = 256
#: How many row problems are kept verbatim (the rest are only counted).
MAX_PROBLEMS = 20


class PointsTableError(ArmdataError):
    """A points table that cannot be read at all (missing file, unknown format, not a table)."""


@dataclass(frozen=True)
class PointRow:
    """One located point (see the module docstring for each field)."""

    episode: str
    step: int
    u: float
    v: float
    confidence: float = 1.0
    episode_id: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    method: str = ""

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in COLUMNS}


@dataclass(frozen=True)
class EpisodeTablePoints:
    """The table's points of one episode, rescaled to the stored image: steps int64 [n], uv float64 [n, 2],
    confidence float64 [n], method per point."""

    steps: np.ndarray
    uv: np.ndarray
    confidence: np.ndarray
    method: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return int(self.steps.shape[0])


@dataclass
class PointsTable:
    """Rows grouped by episode, with the count and description of every row dropped on reading."""

    rows: list[PointRow] = field(default_factory=list)
    dropped: int = 0
    problems: list[str] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index: dict[str, list[int]] | None = None

    def _problem(self, text: str) -> None:
        self.dropped += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def extend(self, other: "PointsTable") -> None:
        self.rows.extend(other.rows)
        self.dropped += other.dropped
        self.problems.extend(other.problems[: max(0, MAX_PROBLEMS - len(self.problems))])
        self.origins.extend(other.origins)
        self._index = None

    @property
    def index(self) -> dict[str, list[int]]:
        if self._index is None:
            idx: dict[str, list[int]] = {}
            for i, r in enumerate(self.rows):
                idx.setdefault(r.episode, []).append(i)
            self._index = idx
        return self._index

    def for_episode(
        self, aliases: Sequence[str], episode_id: str | None, height: int, width: int, num_steps: int
    ) -> tuple[EpisodeTablePoints, list[str]]:
        """The points of the episode known by any of ``aliases`` (and ``episode_id`` where a row names one), in
        pixels of the stored ``height`` x ``width`` image; and the problems of rows that name it but cannot be used
        (step beyond the episode, point outside the image). One point per step: the first row wins, later ones are
        reported."""
        picked: dict[int, tuple[float, float, float, str]] = {}
        problems: list[str] = []
        seen: set[int] = set()
        for alias in dict.fromkeys(a for a in aliases if a):
            for i in self.index.get(alias, ()):
                if i in seen:
                    continue
                seen.add(i)
                r = self.rows[i]
                if r.episode_id is not None and episode_id is not None and str(r.episode_id) != str(episode_id):
                    continue
                u, v = r.u, r.v
                if r.image_width and r.image_height and (r.image_width, r.image_height) != (width, height):
                    # Pixel centres at integer coordinates: scale the extent, not the index.
                    u = (u + 0.5) * width / r.image_width - 0.5
                    v = (v + 0.5) * height / r.image_height - 0.5
                where = f"{r.episode} step {r.step}"
                if not 0 <= r.step < num_steps:
                    problems.append(f"{where}: step outside the episode's {num_steps} steps")
                elif not (-0.5 <= u <= width - 0.5 and -0.5 <= v <= height - 0.5):
                    problems.append(f"{where}: point ({u:.1f}, {v:.1f}) outside the {width}x{height} image")
                elif r.step in picked:
                    problems.append(f"{where}: a second point for the same step (the first is kept)")
                else:
                    picked[r.step] = (u, v, r.confidence, r.method)
        steps = np.array(sorted(picked), dtype=np.int64)
        uv = np.array([picked[s][:2] for s in steps], dtype=np.float64).reshape(-1, 2)
        conf = np.array([picked[s][2] for s in steps], dtype=np.float64)
        return EpisodeTablePoints(steps, uv, conf, tuple(picked[s][3] for s in steps)), problems


# -- reading -----------------------------------------------------------------------------------------------------

def _row_from_mapping(d: dict, where: str, table: PointsTable) -> PointRow | None:
    """A row from a JSON object or Parquet record, or None (the problem recorded) when a field is bad."""
    if not isinstance(d, dict):
        table._problem(f"{where}: not an object")
        return None
    ep = d.get("episode")
    if ep is None or str(ep) == "":
        table._problem(f"{where}: field 'episode' missing")
        return None
    vals: dict[str, float] = {}
    for k in ("step", "u", "v"):
        x = d.get(k)
        try:
            vals[k] = float(x)
        except (TypeError, ValueError):
            table._problem(f"{where}: field {k!r} is {x!r}, not a number")
            return None
        if not math.isfinite(vals[k]):
            table._problem(f"{where}: field {k!r} is not finite")
            return None
    if vals["step"] != int(vals["step"]) or vals["step"] < 0:
        table._problem(f"{where}: field 'step' must be a non-negative integer, got {d.get('step')!r}")
        return None
    conf = d.get("confidence")
    conf = 1.0 if conf is None else float(conf)
    if not 0.0 <= conf <= 1.0:
        table._problem(f"{where}: field 'confidence' {conf} outside [0, 1]")
        return None
    iw, ih = d.get("image_width"), d.get("image_height")
    eid = d.get("episode_id")
    return PointRow(
        episode=str(ep), step=int(vals["step"]), u=vals["u"], v=vals["v"], confidence=conf,
        episode_id=None if eid is None else str(eid),
        image_width=int(iw) if iw else None, image_height=int(ih) if ih else None,
        method=str(d.get("method") or ""),
    )


def parse_jsonl(data: bytes, name: str = "points.jsonl") -> PointsTable:
    table = PointsTable(origins=[name])
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            table._problem(f"{name} line {n}: not JSON ({e.msg})")
            continue
        row = _row_from_mapping(obj, f"{name} line {n}", table)
        if row is not None:
            table.rows.append(row)
    return table


def parse_parquet(data: bytes, name: str = "points.parquet") -> PointsTable:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(io.BytesIO(data)).to_pylist()
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise PointsTableError(f"points table {name}: not a Parquet file ({type(e).__name__}: {e})") from None
    table = PointsTable(origins=[name])
    for n, rec in enumerate(records):
        row = _row_from_mapping(rec, f"{name} row {n}", table)
        if row is not None:
            table.rows.append(row)
    return table


def parse_ecot(data: bytes | dict, name: str = "embodied_features_bridge.json") -> PointsTable:
    """ECoT's ``embodied_features_bridge.json`` (layout in the module docstring) as a points table."""
    obj = json.loads(data) if isinstance(data, (bytes, str)) else data
    if not isinstance(obj, dict):
        raise PointsTableError(f"points table {name}: expected ECoT's {{file_path: {{episode_id: ...}}}} mapping")
    table = PointsTable(origins=[name])
    for file_path, episodes in obj.items():
        if not isinstance(episodes, dict):
            table._problem(f"{name} {file_path}: not a mapping of episode ids")
            continue
        for episode_id, entry in episodes.items():
            where = f"{name} {file_path} episode {episode_id}"
            pos = ((entry or {}).get("features") or {}).get("gripper_position") if isinstance(entry, dict) else None
            if not isinstance(pos, list):
                table._problem(f"{where}: no features.gripper_position list")
                continue
            for step, p in enumerate(pos):
                ok = isinstance(p, (list, tuple)) and len(p) == 2 and all(
                    isinstance(x, (int, float)) and math.isfinite(x) and x >= 0 for x in p)
                if not ok:
                    table._problem(f"{where} step {step}: gripper_position {p!r} is not a detection")
                    continue
                table.rows.append(PointRow(
                    episode=str(file_path), episode_id=str(episode_id), step=step, u=float(p[0]), v=float(p[1]),
                    confidence=1.0, image_width=ECOT_IMAGE_SIZE, image_height=ECOT_IMAGE_SIZE, method="ecot",
                ))
    return table


def parse_points(data: bytes, name: str) -> PointsTable:
    """By the file name: ``.jsonl``/``.ndjson`` JSON Lines, ``.parquet`` Parquet, ``.json`` ECoT's layout."""
    low = name.lower()
    if low.endswith((".jsonl", ".ndjson")):
        return parse_jsonl(data, name)
    if low.endswith((".parquet", ".pq")):
        return parse_parquet(data, name)
    if low.endswith(".json"):
        return parse_ecot(data, name)
    raise PointsTableError(
        f"points table {name}: unknown format; use .jsonl (one row per line), .parquet, or ECoT's "
        f"embodied_features_bridge .json"
    )


# -- writing -----------------------------------------------------------------------------------------------------

def rows_to_jsonl(rows: Iterable[PointRow]) -> bytes:
    return "".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in rows).encode("utf-8")


def rows_to_parquet(rows: Iterable[PointRow]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("episode", pa.string()), ("episode_id", pa.string()), ("step", pa.int64()),
                        ("u", pa.float64()), ("v", pa.float64()), ("confidence", pa.float64()),
                        ("image_width", pa.int64()), ("image_height", pa.int64()), ("method", pa.string())])
    table = pa.Table.from_pylist([r.to_dict() for r in rows], schema=schema)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


def encode_points(rows: Iterable[PointRow], name: str) -> bytes:
    """Rows in the format the file name asks for (``.parquet`` or JSON Lines)."""
    return rows_to_parquet(rows) if name.lower().endswith((".parquet", ".pq")) else rows_to_jsonl(rows)
