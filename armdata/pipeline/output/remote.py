"""A local copy of a finished output on ``gs://`` or ``s3://``, for the readers that work on a local folder.

``check`` and ``audit`` read shards with webdataset and the side files with pyarrow/json from a local folder: for a
remote output they run on a copy made here through Beam's FileSystems. The copy holds what the output's readers
read (the top-level files, ``shards/``), never the job's work folder (``.work/``) nor statistics scratch; files
already copied with the same size are not fetched again, so a second audit of the same output costs nothing.
"""

from __future__ import annotations

import logging
import os

from armdata.pipeline import fs
from armdata.schemas.sample import SHARDS_DIR

logger = logging.getLogger(__name__)


def _files(folder: str) -> list[tuple[str, int]]:
    """(path, size) of the files directly in a remote folder (``*`` does not cross ``/``)."""
    return fs.list_files(fs.join(folder, "*"))


def mirror_output(out_dir: str, local_dir: str) -> str:
    """Copy a remote output's top-level files and shards into ``local_dir``; returns ``local_dir``.

    Each file is written atomically (temporary name, then rename), so an interrupted copy never leaves a
    truncated file that a later call would take as complete.
    """
    if not fs.is_remote(out_dir):
        raise ValueError(f"{out_dir}: not a remote folder")
    n = 0
    for sub in ("", SHARDS_DIR):
        src_dir = fs.join(out_dir, sub) if sub else out_dir
        dst_dir = os.path.join(local_dir, sub) if sub else local_dir
        os.makedirs(dst_dir, exist_ok=True)
        for path, size in _files(src_dir):
            dst = os.path.join(dst_dir, fs.basename(path))
            if os.path.exists(dst) and os.path.getsize(dst) == size:
                continue
            tmp = f"{dst}.tmp-{os.getpid()}"
            with fs.open_read(path) as src, open(tmp, "wb") as f:
                while chunk := src.read(1 << 22):
                    f.write(chunk)
            os.replace(tmp, dst)
            n += 1
    logger.info("copied %d files of %s to %s", n, out_dir, local_dir)
    return local_dir
