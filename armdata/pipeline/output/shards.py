"""WebDataset shard files: deterministic tar writing and reading (local, ``gs://``, ``s3://``).

Fixed member metadata make the same samples give the same bytes, so shard sha256s are reproducible and a resumed
or re-run job can be compared byte for byte.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator

from armdata.pipeline import fs


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0  # fixed metadata: the same samples give the same bytes, so shard sha256s are reproducible
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def write_tar(path: str, samples: Iterable[tuple[str, dict[str, bytes]]]) -> tuple[int, str]:
    """Write samples (key -> members) as a WebDataset tar, atomically (local, gs://, s3://).

    Returns (bytes, sha256) of what was written, hashed on the way out (no second read).
    """
    with fs.atomic_create(path) as w:
        with tarfile.open(fileobj=w, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
            for key, members in samples:
                for ext in sorted(members):
                    data = members[ext]
                    tar.addfile(_tarinfo(f"{key}.{ext}", len(data)), io.BytesIO(data))
    return w.num_bytes, w.sha256.hexdigest()


def read_tar(path: str) -> list[tuple[str, dict[str, bytes]]]:
    """Samples of a tar written by write_tar, in order (key = name before the first dot)."""
    return list(iter_tar(path))


def iter_tar(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """As read_tar, one sample in memory at a time (a 1,000-step episode's part is ~50 MB)."""
    key, members = None, {}
    with fs.open_read(path) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for m in tar:
            k, ext = m.name.split(".", 1)
            if k != key and key is not None:
                yield key, members
                members = {}
            key = k
            members[ext] = tar.extractfile(m).read()
    if key is not None:
        yield key, members
