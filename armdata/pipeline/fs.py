"""Files through Beam's FileSystems, so the same job writes to a local folder, ``gs://`` or ``s3://``.

Writes are atomic: a temporary name beside the target, then a rename (on object stores a rename is a copy and a
delete, so a reader still never sees a half-written file under the final name).

``s3://`` goes through Beam's ``S3IO`` with one client per thread: Beam's S3 file system builds a new boto3 client
(0.1-0.7 s of loading service models) for every call, which made a 25-episode job spend minutes on it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from apache_beam.io.filesystems import FileSystems


def configure(beam_args: list[str]) -> None:
    """Give Beam's FileSystems the storage options among ``beam_args`` (``--s3_endpoint_url``, ``--s3_region_name``,
    ``--project``, ...) in this process; Beam's workers get them from the pipeline options themselves.

    Without flags, S3 credentials, region and endpoint come from boto3's own environment variables
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``) and GCS's from
    Application Default Credentials.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions(list(beam_args)))


_THREAD = threading.local()


def _s3(path: str):
    """This thread's ``S3IO`` for the current options, or None when ``path`` is not on S3."""
    if not path.startswith("s3://"):
        return None
    opts = FileSystems._pipeline_options
    cached = getattr(_THREAD, "s3", None)
    if cached is None or cached[0] is not opts:
        from apache_beam.io.aws import s3io

        cached = (opts, s3io.S3IO(options=opts if opts is not None else {}))
        _THREAD.s3 = cached
    return cached[1]


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
    s3 = _s3(path)
    return s3.exists(path) if s3 else FileSystems.exists(path)


def list_files(pattern: str) -> list[tuple[str, int]]:
    """(path, size) of the files matching a pattern (``*`` does not cross ``/``), sorted by path."""
    s3 = _s3(pattern)
    if s3 is None:
        res = FileSystems.match([pattern])[0]
        return sorted((m.path, m.size_in_bytes) for m in res.metadata_list)
    from apache_beam.io.filesystem import FileSystem

    prefix = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    regex = re.compile(FileSystem.translate_pattern(pattern))
    return sorted((p, size) for p, (size, _) in s3.list_files(prefix, with_metadata=True) if regex.match(p))


def glob(pattern: str) -> list[str]:
    """Paths matching a pattern, sorted (empty when none)."""
    return [p for p, _ in list_files(pattern)]


def delete(paths: list[str]) -> None:
    if not paths:
        return
    s3 = _s3(paths[0])
    if s3 and all(p.startswith("s3://") for p in paths):
        errors = {p: e for p, e in s3.delete_paths(paths).items() if e is not None and getattr(e, "code", 0) != 404}
        if errors:
            raise OSError(f"cannot delete {sorted(errors)[:3]}: {next(iter(errors.values()))}")
    else:
        FileSystems.delete(paths)


def _create(path: str):
    s3 = _s3(path)
    return s3.open(path, "wb") if s3 else FileSystems.create(path)


def _replace(src: str, dst: str) -> None:
    """Move ``src`` over ``dst`` (on object stores a copy and a delete)."""
    s3 = _s3(dst)
    if s3:
        s3.rename(src, dst)  # S3 copies over an existing object
        return
    if FileSystems.exists(dst):
        FileSystems.delete([dst])
    FileSystems.rename([src], [dst])


class HashingWriter:
    """A write-only file wrapper that counts bytes and hashes them on the way through.

    The file is created on the first write: Beam's S3 uploader cannot write an object of 0 bytes (it completes a
    multipart upload with no parts, which S3 refuses), so an empty file is made by ``finish`` another way.
    """

    def __init__(self, path: str):
        self.path = path
        self._f = None
        self.sha256 = hashlib.sha256()
        self.num_bytes = 0

    def write(self, data: bytes) -> int:
        if not data:
            return 0
        if self._f is None:
            self._f = _create(self.path)
        self.sha256.update(data)
        self.num_bytes += len(data)
        self._f.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        if self._f is not None:
            self._f.close()
        elif self.path.startswith("s3://"):
            _put_empty_s3(self.path)
        else:
            FileSystems.create(self.path).close()

    def abort(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            finally:
                delete([self.path])


def _put_empty_s3(path: str) -> None:
    """An empty S3 object with one PutObject, through Beam's own boto3 client (same endpoint and credentials)."""
    bucket, key = path[len("s3://"):].split("/", 1)
    _s3(path).client.client.put_object(Bucket=bucket, Key=key, Body=b"")


@contextmanager
def atomic_create(path: str) -> Iterator[HashingWriter]:
    """Write ``path`` under a temporary name and rename it into place once the block ends without error."""
    w = HashingWriter(f"{path}.tmp-{os.getpid()}")
    try:
        yield w
    except BaseException:
        w.abort()
        raise
    w.finish()
    _replace(w.path, path)


def write_bytes(path: str, data: bytes) -> None:
    with atomic_create(path) as w:
        w.write(data)


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def open_read(path: str):
    """A binary file object for reading (no decompression whatever the name)."""
    s3 = _s3(path)
    if s3:
        return s3.open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
