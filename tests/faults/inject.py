"""Fault injection into real RLDS builder dirs written by tests/rlds_factory.py.

Each helper changes the stored bytes the way a user's data presents a fault (a JPEG cut short in the middle of its
scan, a NaN in a stored action, a key absent from one record, a shard file cut short) and leaves everything else
as the factory wrote it, so the real reader meets the fault exactly where it would in the wild.
"""

from __future__ import annotations

import glob
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np


def shard_files(builder_dir: Path) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(Path(builder_dir) / "*.tfrecord-*")))


def read_records(path: Path) -> list[bytes]:
    import tensorflow as tf

    return list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())


def write_records(path: Path, records: list[bytes]) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)


def edit_episodes(builder_dir: Path, edits: dict[int, Callable]) -> None:
    """Apply ``edits[i](example)`` (a ``tf.train.Example``, changed in place) to record i of the only shard."""
    import tensorflow as tf

    (shard,) = shard_files(builder_dir)
    records = read_records(shard)
    for i, fn in edits.items():
        ex = tf.train.Example.FromString(records[i])
        fn(ex)
        records[i] = ex.SerializeToString()
    write_records(shard, records)


def split_shards(builder_dir: Path, sizes: list[int]) -> list[Path]:
    """Rewrite the single shard as ``len(sizes)`` shards of the given record counts (dataset_info updated)."""
    builder_dir = Path(builder_dir)
    (shard,) = shard_files(builder_dir)
    records = read_records(shard)
    assert sum(sizes) == len(records), (sizes, len(records))
    prefix = shard.name.split(".tfrecord-")[0]
    shard.unlink()
    paths, start = [], 0
    for k, n in enumerate(sizes):
        p = builder_dir / f"{prefix}.tfrecord-{k:05d}-of-{len(sizes):05d}"
        write_records(p, records[start:start + n])
        paths.append(p)
        start += n
    info_path = builder_dir / "dataset_info.json"
    info = json.loads(info_path.read_text())
    for split in info["splits"]:
        split["shardLengths"] = [str(n) for n in sizes]
    info_path.write_text(json.dumps(info, indent=2))
    return paths


def truncate_file(path: Path, keep_fraction: float) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep_fraction)])


def record_offsets(path: Path) -> list[int]:
    """Byte offset where each TFRecord starts (8-byte length, 4-byte crc, data, 4-byte crc)."""
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        out.append(pos)
        n = int.from_bytes(data[pos:pos + 8], "little")
        pos += 12 + n + 4
    return out


# -- edits of one record (tf.train.Example, in place) -------------------------------------------------------------

def _bytes_list(ex, key: str):
    return ex.features.feature[f"steps/{key}"].bytes_list.value


def set_image(ex, camera: str, step: int, data: bytes) -> None:
    _bytes_list(ex, camera)[step] = data


def image(ex, camera: str, step: int) -> bytes:
    return bytes(_bytes_list(ex, camera)[step])


def truncate_jpeg(camera: str, step: int, keep: float = 0.6):
    """Cut the stored JPEG of one step short, in the middle of its entropy-coded scan (OpenCV decodes what is left
    and fills the rest with grey without raising: the reader must notice)."""

    def edit(ex):
        data = image(ex, camera, step)
        assert data[:2] == b"\xff\xd8", "not a JPEG"
        set_image(ex, camera, step, data[: int(len(data) * keep)])

    return edit


def garble_image(camera: str, step: int):
    """Overwrite the header of one step's stored image (no decoder can read it)."""

    def edit(ex):
        data = bytearray(image(ex, camera, step))
        data[2:40] = b"\x00" * 38
        set_image(ex, camera, step, bytes(data))

    return edit


def constant_camera(camera: str, value: int, encoding: str = ".png", shape=(16, 20, 3)):
    """Replace every frame of one camera with a one-colour image."""

    def edit(ex):
        ok, buf = cv2.imencode(encoding, np.full(shape, value, np.uint8))
        assert ok
        vals = _bytes_list(ex, camera)
        for t in range(len(vals)):
            vals[t] = buf.tobytes()

    return edit


def set_action(step: int, dim: int, value: float, width: int = 7):
    def edit(ex):
        ex.features.feature["steps/action"].float_list.value[step * width + dim] = value

    return edit


def widen_action(extra: int = 1, width: int = 7):
    """Store each step's action with `extra` more values than the feature spec says."""

    def edit(ex):
        vals = list(ex.features.feature["steps/action"].float_list.value)
        t = len(vals) // width
        new = []
        for s in range(t):
            new.extend(vals[s * width:(s + 1) * width] + [0.0] * extra)
        del ex.features.feature["steps/action"].float_list.value[:]
        ex.features.feature["steps/action"].float_list.value.extend(new)

    return edit


def drop_key(key: str):
    def edit(ex):
        del ex.features.feature[key]

    return edit


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
