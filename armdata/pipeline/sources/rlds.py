"""Read RLDS / Open X-Embodiment episodes from a TFDS builder directory.

One code path for local reading and for Beam: a builder directory (local, ``gs://``, ``s3://`` through tfds's
gfile, or ``builtin:sample``) is opened with ``tfds.builder_from_directory`` for its feature spec and shard list;
each shard's TFRecords are read in order and each record is decoded with
``builder.info.features.deserialize_example_np`` (``tfds.beam.ReadFromTFDS`` cannot carry RLDS's nested
``steps``). The encoded images of the cameras a source names are kept as stored, so shards can pass JPEG bytes
through without re-encoding.

Episode keys are ``{split}-{shard:05d}-{record:06d}``: stable across runs and readers, and free of dots.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import numpy as np

from armdata.schemas.errors import ArmdataError, RecordError, SourceFileError
from armdata.schemas.records import Episode
from armdata.schemas.source import BUILTIN_PREFIX, EPISODE_METADATA, SourceConfig

logger = logging.getLogger(__name__)

_SHARD_RE = re.compile(r"tfrecord-(\d+)-of-(\d+)$")


class DataLocationError(ArmdataError):
    """The data directory or split a source names does not exist."""


def resolve_data_dir(source: SourceConfig) -> str:
    d = source.data_dir()
    if d.startswith(BUILTIN_PREFIX):
        from armdata.synthetic.world import builtin_dataset_dir

        return builtin_dataset_dir(d)
    return d


def open_builder(source: SourceConfig):
    """The TFDS builder of a source's data; clear errors for a missing directory or unknown split."""
    import tensorflow_datasets as tfds

    d = resolve_data_dir(source)
    try:
        builder = tfds.builder_from_directory(d)
    except Exception as e:  # tfds raises several types for a missing or unreadable dir
        raise DataLocationError(
            f"source {source.name}: cannot open the TFDS builder directory {d!r} "
            f"(from {source.origin or 'its source file'}): {type(e).__name__}: {e}"
        ) from None
    splits = sorted(builder.info.splits.keys())
    if source.data.split not in splits:
        raise DataLocationError(
            f"source {source.name}: unknown split {source.data.split!r} in {d}; splits that exist: {', '.join(splits)}"
        )
    return builder


def shard_paths(source: SourceConfig, builder=None) -> list[str]:
    """The TFRecord files of the source's split, in shard order."""
    builder = builder or open_builder(source)
    paths = [str(p) for p in builder.info.splits[source.data.split].filepaths]
    return sorted(paths, key=_shard_index)


def episode_keys(source: SourceConfig, builder=None) -> list[str]:
    """Every episode key of the source's split, from the dataset_info's shard lengths (nothing is read)."""
    builder = builder or open_builder(source)
    split = builder.info.splits[source.data.split]
    paths = sorted((str(p) for p in split.filepaths), key=_shard_index)
    keys = []
    for path, n in zip(paths, split.shard_lengths):
        keys.extend(episode_key(source.data.split, path, i) for i in range(int(n)))
    return keys


def _shard_index(path: str) -> int:
    m = _SHARD_RE.search(str(path))
    return int(m.group(1)) if m else 0


def episode_key(split: str, shard_path: str, index: int) -> str:
    return f"{split}-{_shard_index(shard_path):05d}-{index:06d}"


def iter_records(shard_path: str) -> Iterator[tuple[int, bytes]]:
    """(index within the shard, serialized example) for every record of one TFRecord shard."""
    import tensorflow as tf

    for i, rec in enumerate(tf.data.TFRecordDataset(shard_path).as_numpy_iterator()):
        yield i, rec


def flatten_features(features, prefix: str = "") -> dict[str, Any]:
    """Leaf features of a tfds FeaturesDict by '/' path; the ``steps`` dataset's leaves keep ``steps/``."""
    import tensorflow_datasets as tfds

    out: dict[str, Any] = {}
    items = features.items() if hasattr(features, "items") else []
    for k, f in items:
        path = f"{prefix}{k}"
        if isinstance(f, tfds.features.Dataset):
            out.update(flatten_features(f.feature, path + "/"))
        elif isinstance(f, tfds.features.FeaturesDict):
            out.update(flatten_features(f, path + "/"))
        else:
            out[path] = f
    return out


def split_path(d: dict, path: str) -> list[str]:
    """Split a '/' path into dict keys, honouring keys that themselves hold '/' (BC-Z's ``future/xyz_residual``):
    at each level the longest matching key wins. Raises KeyError(path) when nothing matches."""
    parts = path.split("/")
    out: list[str] = []
    cur: Any = d
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            key = "/".join(parts[i:j])
            if isinstance(cur, dict) and key in cur:
                out.append(key)
                cur = cur[key]
                i = j
                break
        else:
            raise KeyError(path)
    return out


def get_path(d: dict, path: str):
    """The value at a '/' path in nested dicts (keys holding '/' honoured, see split_path)."""
    cur: Any = d
    for part in split_path(d, path):
        cur = cur[part]
    return cur


def source_episode_id(metadata: dict[str, Any]) -> str:
    """The episode's id in the source data: ``episode_metadata/file_path``, suffixed ``#<episode_id>`` where the
    metadata also has an ``episode_id`` (Bridge: one original file holds many episodes, so the path alone is not
    unique; ECoT's released Bridge annotations are keyed the same way, file path then episode id). Empty where the
    source records neither."""
    path = _as_text(metadata.get("file_path", b"")).strip()
    if "episode_id" in metadata:
        ep_id = np.asarray(metadata["episode_id"])
        ep_id = _as_text(ep_id) if ep_id.dtype.kind in "SUO" else str(ep_id.item())
        return f"{path}#{ep_id}" if path else ep_id
    return path


def _as_text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO":
        v = v.reshape(-1)
        return _as_text(v[0]) if v.size else ""
    return str(v)


def _flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten_dict(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_source_against_features(source: SourceConfig, features) -> None:
    """Every field path the source file names must exist in the data; else name the setting and what exists."""
    leaves = flatten_features(features)
    step_keys = sorted(k[len("steps/"):] for k in leaves if k.startswith("steps/"))
    meta_keys = sorted(k for k in leaves if k.startswith(EPISODE_METADATA))
    for setting, path in source.step_paths().items():
        if path.startswith(EPISODE_METADATA):
            if path not in leaves:
                raise SourceFileError(source.origin or source.name, setting, f"no field {path!r} in the data", meta_keys)
        else:
            # A nested action dict may be named whole (action) or by leaf (action/world_vector).
            if f"steps/{path}" not in leaves and not any(k.startswith(path + "/") for k in step_keys):
                raise SourceFileError(source.origin or source.name, setting, f"no step field {path!r} in the data", step_keys)


def _skip_images(features, keep: set[str], prefix: str = "") -> dict:
    """tfds decoders that skip decoding every Image feature whose step path is not in ``keep``."""
    import tensorflow_datasets as tfds

    out: dict = {}
    for k, f in features.items():
        if isinstance(f, tfds.features.Dataset):
            sub = _skip_images(f.feature, keep, "")
        elif isinstance(f, tfds.features.FeaturesDict):
            sub = _skip_images(f, keep, f"{prefix}{k}/")
        elif isinstance(f, tfds.features.Image) and f"{prefix}{k}" not in keep:
            sub = tfds.decode.SkipDecoding()
        else:
            continue
        if sub:
            out[k] = sub
    return out


class EpisodeDecoder:
    """Decodes serialized RLDS records of one source into Episodes.

    Picklable: the builder (and its feature spec) is opened lazily, once per process, on first use, so a Beam
    DoFn can hold one and call ``decode`` in its workers.
    """

    def __init__(self, source: SourceConfig):
        self.source = source

    def __getstate__(self):
        return {"source": self.source}

    def __setstate__(self, state):
        self.source = state["source"]

    @cached_property
    def builder(self):
        return open_builder(self.source)

    @cached_property
    def features(self):
        f = self.builder.info.features
        check_source_against_features(self.source, f)
        return f

    @cached_property
    def _decoders(self) -> dict | None:
        """Leave the images of cameras the source does not name undecoded (Bridge's padded image_3, say)."""
        src = self.source
        keep = {src.cameras.primary, *src.cameras.extra, src.cameras.wrist, src.cameras.depth} - {None}
        dec = _skip_images(self.features, keep)
        return dec or None

    @cached_property
    def _image_paths(self) -> set[str]:
        import tensorflow_datasets as tfds

        return {
            k[len("steps/"):]
            for k, f in flatten_features(self.features).items()
            if k.startswith("steps/") and isinstance(f, tfds.features.Image)
        }

    def decode(self, record: bytes, shard_path: str, index: int) -> Episode:
        """One serialized example -> Episode. Raises RecordError naming the source, episode and field."""
        src = self.source
        key = episode_key(src.data.split, shard_path, index)
        features = self.features  # opens the data and checks the source file: a typo is one SourceFileError
        try:
            ex = features.deserialize_example_np(record, decoders=self._decoders)
        except Exception as e:
            raise RecordError(src.name, key, None, "record", "unreadable_record", f"{type(e).__name__}: {e}") from None
        steps = ex["steps"]
        n = len(steps)
        if n == 0:
            raise RecordError(src.name, key, None, "steps", "empty_episode", "the episode has 0 steps")
        step_list = [steps[i] for i in range(n)]
        metadata = _flatten_dict(ex.get("episode_metadata", {}) or {})

        def stacked(path: str, step_index_field: str) -> np.ndarray:
            vals = []
            for t, s in enumerate(step_list):
                try:
                    vals.append(np.asarray(get_path(s, path)))
                except KeyError:
                    raise RecordError(src.name, key, t, path, "missing_field", "field missing in this step") from None
            try:
                return np.stack(vals)
            except ValueError as e:
                shapes = sorted({v.shape for v in vals})
                raise RecordError(
                    src.name, key, None, path, "ragged_field", f"steps disagree in shape {shapes}: {e}"
                ) from None

        def field_group(paths: list[str]) -> dict[str, np.ndarray]:
            out: dict[str, np.ndarray] = {}
            for path in paths:
                if path.startswith(EPISODE_METADATA):
                    out[path] = np.asarray(metadata[path[len(EPISODE_METADATA):]])
                    continue
                try:
                    value = get_path(step_list[0], path)
                except KeyError:
                    raise RecordError(src.name, key, 0, path, "missing_field", "field missing in this step") from None
                if isinstance(value, dict):  # a whole nested dict named: take every leaf
                    for leaf in _flatten_dict(value):
                        out[f"{path}/{leaf}"] = stacked(f"{path}/{leaf}", path)
                else:
                    out[path] = stacked(path, path)
            return out

        cams = [src.cameras.primary, *src.cameras.extra] + ([src.cameras.wrist] if src.cameras.wrist else [])
        frames: dict[str, np.ndarray] = {}
        for cam in cams:
            arr = stacked(cam, cam)
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
                raise RecordError(
                    src.name, key, None, cam, "bad_image", f"expected uint8 [T,H,W,3], got {arr.dtype} {arr.shape}"
                )
            frames[cam] = arr
        jpeg = self._encoded_images(record, [c for c in cams if c in self._image_paths], n, key)

        action_paths = sorted({seg.path for seg in src.action.arm} | {src.action.gripper.path})
        state_paths = list(src.state.keys)
        if src.state.eef_position and src.state.eef_position.path not in state_paths:
            state_paths.append(src.state.eef_position.path)
        other: list[str] = []
        if src.cameras.depth:
            other.append(src.cameras.depth)

        instr_path = src.instruction.path
        if instr_path.startswith(EPISODE_METADATA):
            instruction = _as_text(metadata.get(instr_path[len(EPISODE_METADATA):], b""))
        else:
            texts = [_as_text(get_path(s, instr_path)) for s in step_list]
            instruction = next((t for t in texts if t.strip()), "")

        return Episode(
            source=src.name,
            episode_key=key,
            frames=frames,
            actions_raw=field_group(action_paths),
            state=field_group(state_paths),
            instruction=instruction,
            jpeg=jpeg,
            steps=field_group(other),
            metadata=metadata,
            source_episode_id=source_episode_id(metadata),
        )

    def _encoded_images(self, record: bytes, cams: list[str], n: int, key: str) -> dict[str, list[bytes]]:
        """The stored (encoded) bytes of each camera's frames, read from the example without decoding."""
        if not cams:
            return {}
        import tensorflow as tf

        ex = tf.train.Example.FromString(record)
        out: dict[str, list[bytes]] = {}
        for cam in cams:
            feat = ex.features.feature.get(f"steps/{cam}")
            if feat is None or len(feat.bytes_list.value) != n:
                continue  # stored some other way (e.g. raw tensor): frames are re-encoded when written
            out[cam] = list(feat.bytes_list.value)
        return out


def read_episodes(source: SourceConfig, limit: int | None = None) -> Iterator[Episode]:
    """Every episode of a source's split, in shard and record order (local, single process).

    Bad records raise RecordError; callers that must keep going use ``read_episodes_or_errors``.
    """
    for item in read_episodes_or_errors(source, limit):
        if isinstance(item, RecordError):
            raise item
        yield item


def read_episodes_or_errors(source: SourceConfig, limit: int | None = None) -> Iterator[Episode | RecordError]:
    decoder = EpisodeDecoder(source)
    count = 0
    for shard in shard_paths(source, decoder.builder):
        for i, rec in iter_records(shard):
            if limit is not None and count >= limit:
                return
            count += 1
            try:
                yield decoder.decode(rec, shard, i)
            except RecordError as e:
                yield e
