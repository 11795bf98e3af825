"""Read RLDS / Open X-Embodiment episodes from a TFDS builder directory.

One code path for local reading and for Beam: a builder directory (local, ``gs://``, ``s3://``, or
``builtin:sample``) is read through Beam's FileSystems, never TensorFlow's (whose gfile has no ``s3://``): its
``dataset_info.json`` gives the splits and shard lengths, its ``features.json`` the feature spec
(``tfds.features.FeatureConnector.from_json``); each shard's TFRecords are read in order with Beam's TFRecord
framing and each record is decoded with ``features.deserialize_example_np`` (``tfds.beam.ReadFromTFDS`` cannot
carry RLDS's nested ``steps``). The encoded images of the cameras a source names are kept as stored, so shards can pass JPEG bytes
through without re-encoding.

Episode keys are ``{split}-{shard:05d}-{record:06d}``: stable across runs and readers, and free of dots.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from armdata.pipeline import fs
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


@dataclass(frozen=True)
class SplitInfo:
    """One split of a builder directory: its shard files in order and the episodes in each."""

    name: str
    filepaths: tuple[str, ...]
    shard_lengths: tuple[int, ...]
    num_bytes: int

    @property
    def num_examples(self) -> int:
        return sum(self.shard_lengths)


@dataclass(frozen=True)
class BuilderInfo:
    """What armdata needs of a TFDS builder directory's ``dataset_info.json`` and ``features.json``."""

    name: str
    version: str
    splits: dict[str, SplitInfo]
    features: Any  # tfds.features.FeaturesDict


@dataclass(frozen=True)
class BuilderDir:
    """A TFDS builder directory read through Beam's FileSystems (local, gs://, s3://)."""

    data_dir: str
    info: BuilderInfo


# tfds's default when dataset_info.json names none (older Open-X builders).
_DEFAULT_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


def _split_info(data_dir: str, name: str, file_format: str, split: dict) -> SplitInfo:
    lengths = tuple(int(n) for n in split.get("shardLengths", []))
    template = split.get("filepathTemplate") or _DEFAULT_TEMPLATE
    paths = []
    for i in range(len(lengths)):
        file_name = (template.replace("{DATASET}", name).replace("{SPLIT}", split["name"])
                     .replace("{FILEFORMAT}", file_format)
                     .replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{len(lengths):05d}")
                     .replace("{SHARD_INDEX}", f"{i:05d}").replace("{NUM_SHARDS}", f"{len(lengths):05d}"))
        paths.append(fs.join(data_dir, file_name))
    num_bytes = sum(int(b) for b in split.get("shardBytes", [])) or int(split.get("numBytes", 0) or 0)
    return SplitInfo(split["name"], tuple(paths), lengths, num_bytes)


def read_builder_dir(data_dir: str) -> BuilderDir:
    """Read a builder directory's two JSON files through FileSystems; raises what FileSystems raises."""
    import tensorflow_datasets as tfds

    info = json.loads(fs.read_bytes(fs.join(data_dir, "dataset_info.json")))
    features = tfds.features.FeatureConnector.from_json(json.loads(fs.read_bytes(fs.join(data_dir, "features.json"))))
    name = info["name"]
    file_format = info.get("fileFormat", "tfrecord")
    splits = {s["name"]: _split_info(data_dir, name, file_format, s) for s in info.get("splits", [])}
    return BuilderDir(data_dir, BuilderInfo(name, str(info.get("version", "")), splits, features))


def open_builder(source: SourceConfig) -> BuilderDir:
    """The builder directory of a source's data; clear errors for a missing directory or unknown split."""
    d = resolve_data_dir(source)
    try:
        builder = read_builder_dir(d)
    except Exception as e:  # FileSystems and tfds raise several types for a missing or unreadable dir
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


def shard_paths(source: SourceConfig, builder: BuilderDir | None = None) -> list[str]:
    """The TFRecord files of the source's split, in shard order."""
    builder = builder or open_builder(source)
    return list(builder.info.splits[source.data.split].filepaths)


def episode_keys(source: SourceConfig, builder: BuilderDir | None = None) -> list[str]:
    """Every episode key of the source's split, from the dataset_info's shard lengths (nothing is read)."""
    builder = builder or open_builder(source)
    split = builder.info.splits[source.data.split]
    keys = []
    for path, n in zip(split.filepaths, split.shard_lengths):
        keys.extend(episode_key(source.data.split, path, i) for i in range(int(n)))
    return keys


def _shard_index(path: str) -> int:
    m = _SHARD_RE.search(str(path))
    return int(m.group(1)) if m else 0


def episode_key(split: str, shard_path: str, index: int) -> str:
    return f"{split}-{_shard_index(shard_path):05d}-{index:06d}"


def iter_records(shard_path: str) -> Iterator[tuple[int, bytes]]:
    """(index within the shard, serialized example) for every record of one TFRecord shard.

    Read through Beam's FileSystems with Beam's TFRecord framing (lengths and data CRC-checked), so a shard on
    ``s3://`` reads like a local one; the index is why this is not ``ReadFromTFRecord`` (episode keys need it).
    A shard cut short or corrupt raises (ValueError) after the records before the damage; jobs use
    :func:`iter_records_or_errors`, which keeps those records and names every episode lost.
    """
    from apache_beam.io.tfrecordio import _TFRecordUtil

    with fs.open_read(shard_path) as f:
        i = 0
        while True:
            try:
                rec = _TFRecordUtil.read_record(f)
            except ValueError as e:  # Beam's message ends with the record's bytes in hex: keep the reason only
                raise ValueError(f"record {i}: {str(e).split(':')[0]}") from None
            if rec is None:
                return
            yield i, rec
            i += 1


def shard_lengths(source: SourceConfig, builder=None) -> dict[str, int]:
    """Shard path -> number of records the data's dataset_info says it holds."""
    builder = builder or open_builder(source)
    split = builder.info.splits[source.data.split]
    return {str(p): int(n) for p, n in zip(split.filepaths, split.shard_lengths)}


def iter_records_or_errors(
    source_name: str, split: str, shard_path: str, expected: int | None = None
) -> Iterator[tuple[int, bytes | RecordError]]:
    """As iter_records, but a shard cut short (or corrupt past some point) does not cost the others: the records
    before the damage are yielded, then one RecordError per episode the dataset_info says the rest of the shard
    held (at least one), each naming its episode key."""
    i = 0
    try:
        for i, rec in iter_records(shard_path):
            yield i, rec
            i += 1
    except Exception as e:  # a truncated or corrupt record (ValueError); nothing past it is readable
        msg = str(e).split("[Op:")[0].strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        lost = range(i, max(i + 1, expected or 0))
        logger.warning("shard %s is damaged at record %d: %d episode(s) lost", shard_path, i, len(lost))
        for j in lost:
            yield j, RecordError(
                source_name, episode_key(split, shard_path, j), None, "record", "truncated_shard",
                f"shard {shard_path.rsplit('/', 1)[-1]} is cut short or corrupt at record {i} "
                f"({type(e).__name__}: {msg}); this record is past the damage",
            )


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
        """tfds leaves every image encoded: tfds decodes lazily, when a step is indexed, outside any guard, and a
        corrupt image then surfaces as an unnamed error. armdata decodes the cameras the source names itself, one
        step at a time (:meth:`_decode_image`), so a bad image names its step and camera; the images of cameras the
        source does not name are never decoded (Bridge's padded image_3, say)."""
        dec = _skip_images(self.features, set())
        return dec or None

    @cached_property
    def _image_features(self) -> dict[str, Any]:
        import tensorflow_datasets as tfds

        return {
            k[len("steps/"):]: f
            for k, f in flatten_features(self.features).items()
            if k.startswith("steps/") and isinstance(f, tfds.features.Image)
        }

    @property
    def _image_paths(self) -> set[str]:
        return set(self._image_features)

    def _decode_image(self, key: str, t: int, path: str, data) -> np.ndarray:
        """One stored image -> array, through tfds's own decoder; a truncated or corrupt one is a RecordError
        naming the step and the camera (OpenCV would otherwise return a grey-filled partial image)."""
        if not isinstance(data, (bytes, np.bytes_)):
            return np.asarray(data)
        data = bytes(data)
        problem = image_integrity_problem(data)
        if problem is None:
            try:
                arr = self._image_features[path].decode_example_np(data)
            except Exception as e:  # cv2 returns None for undecodable bytes, then tfds fails on it
                problem = f"cannot be decoded ({type(e).__name__}: {e})"
            else:
                if arr is None or getattr(arr, "size", 0) == 0:
                    problem = "cannot be decoded (empty result)"
        if problem is not None:
            raise RecordError(self.source.name, key, t, path, "corrupt_image", f"image of {len(data)} bytes {problem}")
        return arr

    def _missing_keys(self, record: bytes) -> list[str]:
        """Feature keys the spec has and this record lacks (tfds's numpy parser does not name them)."""
        try:
            import tensorflow as tf

            present = set(tf.train.Example.FromString(record).features.feature.keys())
        except Exception:  # not even a tf.train.Example
            return []
        return sorted(k for k in flatten_features(self.features) if k not in present)

    def decode(self, record: bytes, shard_path: str, index: int) -> Episode:
        """One serialized example -> Episode. Raises RecordError naming the source, episode, step and field."""
        src = self.source
        key = episode_key(src.data.split, shard_path, index)
        features = self.features  # opens the data and checks the source file: a typo is one SourceFileError
        try:
            ex = features.deserialize_example_np(record, decoders=self._decoders)
        except Exception as e:
            raise record_error(src.name, key, e, missing=self._missing_keys(record)) from None
        steps = ex["steps"]
        n = len(steps)
        if n == 0:
            raise RecordError(src.name, key, None, "steps", "empty_episode", "the episode has 0 steps")
        step_list = []
        for t in range(n):
            try:
                step_list.append(steps[t])
            except Exception as e:  # tfds decodes each step when it is indexed
                raise record_error(src.name, key, e, step=t) from None
        metadata = _flatten_dict(ex.get("episode_metadata", {}) or {})
        images = self._image_paths

        def stacked(path: str, step_index_field: str) -> np.ndarray:
            vals = []
            for t, s in enumerate(step_list):
                try:
                    v = get_path(s, path)
                except KeyError:
                    raise RecordError(src.name, key, t, path, "missing_field", "field missing in this step") from None
                vals.append(self._decode_image(key, t, path, v) if path in images else np.asarray(v))
            try:
                return np.stack(vals)
            except ValueError as e:
                shapes = sorted({v.shape for v in vals})
                t = next(i for i, v in enumerate(vals) if v.shape != vals[0].shape)
                raise RecordError(
                    src.name, key, t, path, "ragged_field", f"steps disagree in shape {shapes}: {e}"
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
        # The stored (encoded) bytes of each camera's frames, for pass-through without re-encoding.
        jpeg = {cam: [bytes(get_path(s, cam)) for s in step_list] for cam in cams if cam in images}

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


_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIG, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_MISSING_FEATURE = re.compile(r"Feature: (\S+?) \(data type")
_PARSING_FEATURE = re.compile(r"parsing feature (\S+?):")


def image_integrity_problem(data: bytes) -> str | None:
    """Why stored image bytes are not a whole image, or None. A JPEG must end in its end-of-image marker and a PNG
    in its IEND chunk (trailing zero padding allowed): decoders fill a cut-short image with grey and say nothing."""
    if not data:
        return "is empty"
    body = data.rstrip(b"\x00")
    if data[:2] == _JPEG_SOI and not body.endswith(_JPEG_EOI):
        return "is a truncated JPEG (no end-of-image marker)"
    if data[:8] == _PNG_SIG and not body.endswith(_PNG_IEND):
        return "is a truncated PNG (no IEND chunk)"
    return None


def _field_name(feature_key: str) -> str:
    """``steps/action`` -> ``action`` (dead letters name step fields as source files do)."""
    return feature_key[len("steps/"):] if feature_key.startswith("steps/") else feature_key


def record_error(source: str, key: str, e: Exception, step: int | None = None,
                 missing: list[str] | None = None) -> RecordError:
    """A record or step tfds cannot parse, naming the feature: one the record lacks, or the one tf's message
    names (``Error while parsing feature steps/action: cannot reshape ...``)."""
    text = f"{type(e).__name__}: {e}".split("[Op:")[0].strip()
    if missing:
        return RecordError(source, key, step, _field_name(missing[0]), "missing_field",
                           f"the record has no {', '.join(missing)} (the data's features.json lists it): {text}")
    m = _MISSING_FEATURE.search(text)
    if m:
        return RecordError(source, key, step, _field_name(m.group(1)), "missing_field", text)
    m = _PARSING_FEATURE.search(text)
    if m:
        return RecordError(source, key, step, _field_name(m.group(1)), "bad_field", text)
    return RecordError(source, key, step, "record" if step is None else "steps", "unreadable_record", text)


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
    lengths = shard_lengths(source, decoder.builder)
    count = 0
    for shard in shard_paths(source, decoder.builder):
        for i, rec in iter_records_or_errors(source.name, source.data.split, shard, lengths.get(shard)):
            if limit is not None and count >= limit:
                return
            count += 1
            if isinstance(rec, RecordError):
                yield rec
                continue
            try:
                yield decoder.decode(rec, shard, i)
            except RecordError as e:
                yield e
