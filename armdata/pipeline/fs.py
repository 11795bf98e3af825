"""Files through Beam's FileSystems, so the same job writes to a local folder, ``gs://`` or ``s3://``.

Writes are atomic: a temporary name beside the target, then a rename (on object stores a rename is a copy and a
delete, so a reader still never sees a half-written file under the final name).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager

from apache_beam.io.filesystems import FileSystems


def is_remote(path: str) -> bool:
    return "://" in path


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def absolute(path: str) -> str:
    return path if is_remote(path) else os.path.abspath(path)


def makedirs(path: str) -> None:
    if not is_remote(path):  # object stores have no folders
        os.makedirs(path, exist_ok=True)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def glob(pattern: str) -> list[str]:
    """Paths matching a pattern, sorted (empty when none)."""
    res = FileSystems.match([pattern])[0]
    return sorted(m.path for m in res.metadata_list)


def delete(paths: list[str]) -> None:
    if paths:
        FileSystems.delete(paths)


class HashingWriter:
    """A write-only file wrapper that counts bytes and hashes them on the way through."""

    def __init__(self, f):
        self._f = f
        self.sha256 = hashlib.sha256()
        self.num_bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.num_bytes += len(data)
        self._f.write(data)
        return len(data)

    def flush(self) -> None:
        pass


@contextmanager
def atomic_create(path: str) -> Iterator[HashingWriter]:
    """Write ``path`` under a temporary name and rename it into place once the block ends without error."""
    tmp = f"{path}.tmp-{os.getpid()}"
    f = FileSystems.create(tmp)
    try:
        w = HashingWriter(f)
        yield w
        f.close()
    except BaseException:
        f.close()
        FileSystems.delete([tmp])
        raise
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def write_bytes(path: str, data: bytes) -> None:
    with atomic_create(path) as w:
        w.write(data)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def open_read(path: str):
    return FileSystems.open(path)
