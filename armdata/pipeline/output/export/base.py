"""The exporter contract: a finished output folder (shards, index, statistics, run record) -> another training
layout, with no model run. One strict registry, ``EXPORTERS``; each exporter names the layouts it writes.

An exporter reads samples through :func:`iter_samples` (the real shard reader, in shard and key order, one shard
in memory at a time), writes into ``to`` atomically (a temporary folder beside it, then a rename), carries every
sample's key and source-episode id along, and returns an :class:`ExportResult` the command prints.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from armdata.pipeline.output import reader as rd
from armdata.schemas.errors import ArmdataError
from armdata.schemas.registry import Registry
from armdata.schemas.sample import SampleAnnotation


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the folder, its layout, how many rows (samples/frames) and episodes, and the files."""

    path: str
    layout: str
    rows: int
    episodes: int
    files: list[str] = field(default_factory=list)


class Exporter(Protocol):
    """``layouts``: the names ``--layout`` accepts, the first is the default."""

    layouts: tuple[str, ...]

    def export(self, out_dir: Path, to: Path, layout: str) -> ExportResult: ...


EXPORTERS: Registry[type] = Registry("exporter")


def register(name: str):
    """Class decorator: ``@register("lerobot")``."""

    def deco(cls):
        EXPORTERS.register(name, cls)
        return cls

    return deco


def iter_samples(out_dir: str | Path) -> Iterator[tuple[str, dict[str, bytes], SampleAnnotation]]:
    """(key, members, annotation) of every sample of a finished output, in shard order then tar order."""
    shards = rd.shard_paths(out_dir)
    if not shards:
        raise ArmdataError(f"{out_dir}: no shards under {Path(out_dir) / 'shards'} (is it a finished output?)")
    for shard in shards:
        for key, members in rd.iter_shard(shard):
            yield key, members, SampleAnnotation.from_json(members["json"])


@contextmanager
def staged_folder(to: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder beside ``to`` that replaces it only when the block finishes: a reader never sees a half
    export under the final name, and a failed export leaves the old one (or nothing) in place."""
    to = Path(to)
    if to.exists() and not overwrite:
        raise ArmdataError(f"{to} exists; pass --overwrite to replace it")
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{to.name}.tmp-", dir=to.parent))
    try:
        yield tmp
        if to.exists():
            shutil.rmtree(to)
        os.rename(tmp, to)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
