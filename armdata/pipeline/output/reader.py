"""Reading a finished output folder back from disk, with the real readers (never the job's memory).

Shards are read with ``webdataset`` itself, the reader a trainer uses, so that what the checker and the audit
see is what training will see: a sample is the group of tar members sharing the name before the first dot, its
members keyed by the rest of the name (``jpg``, ``json``, ``wrist.jpg``, ``traj.png``). The index is read with
pyarrow, the side files as JSON. The layout is ``armdata.schemas.sample``'s.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from armdata.schemas.sample import (
    FAILURES_FILE,
    INDEX_FILE,
    RUN_FILE,
    SHARD_PREFIX,
    SHARDS_DIR,
    STATS_FILE,
)

logger = logging.getLogger(__name__)

SHARD_RE = re.compile(rf"^{re.escape(SHARD_PREFIX)}-(\d{{5}})-of-(\d{{5}})\.tar$")


def shard_paths(out_dir: str | Path) -> list[Path]:
    """Every ``*.tar`` under ``OUT/shards``, sorted by name (deterministic names sort in shard order)."""
    d = Path(out_dir) / SHARDS_DIR
    return sorted(p for p in d.glob("*.tar") if p.is_file()) if d.is_dir() else []


def manifest_path(shard: Path) -> Path:
    """``armdata-00000-of-00004.tar`` -> ``armdata-00000-of-00004.json`` beside it."""
    return shard.with_suffix(".json")


def iter_shard(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, members) for each sample of one shard, in tar order, through ``webdataset.WebDataset``.

    Members are raw bytes keyed by extension (lower-cased by webdataset). Raises what the reader raises on a
    damaged tar (the caller turns that into a failure naming the shard).
    """
    import webdataset as wds

    ds = wds.WebDataset(str(path), shardshuffle=False, empty_check=False)
    for sample in ds:
        key = sample["__key__"]
        members = {k: v for k, v in sample.items() if not k.startswith("__")}
        yield key, members


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_run(out_dir: str | Path) -> dict:
    """``OUT/run.json`` as a dict, or {} when absent (callers say what they could not check)."""
    p = Path(out_dir) / RUN_FILE
    return read_json(p) if p.exists() else {}


def read_statistics(out_dir: str | Path) -> dict:
    p = Path(out_dir) / STATS_FILE
    return read_json(p) if p.exists() else {}


def read_index_rows(out_dir: str | Path) -> list[dict] | None:
    """Rows of ``OUT/index.parquet`` as dicts (pyarrow), or None when the file is absent."""
    p = Path(out_dir) / INDEX_FILE
    if not p.exists():
        return None
    import pyarrow.parquet as pq

    return pq.read_table(p).to_pylist()


def read_dead_letters(out_dir: str | Path) -> tuple[list[dict], list[tuple[int, str]]]:
    """(records, bad lines) of ``OUT/failures.jsonl``; a bad line is (line number, why)."""
    p = Path(out_dir) / FAILURES_FILE
    records: list[dict] = []
    bad: list[tuple[int, str]] = []
    if not p.exists():
        return records, bad
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                bad.append((n, f"not JSON: {e}"))
                continue
            if not isinstance(d, dict):
                bad.append((n, "not a JSON object"))
                continue
            records.append(d)
    return records, bad


def nested(d: dict, dotted: str, default: Any = None) -> Any:
    """``nested(run, "models.depth_tokenizer.path")``: None-safe lookup of a dotted path."""
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur
