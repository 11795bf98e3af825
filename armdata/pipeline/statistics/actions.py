"""Per-dataset action and proprio statistics that merge exactly across bundles and workers.

The numbers end up in ``dataset_statistics.json`` in the layout OpenVLA and MolmoAct read::

    {name: {"action":  {"mean", "std", "max", "min", "q01", "q99": [D floats], "mask": [D bools]},
            "proprio": {"mean", "std", "max", "min", "q01", "q99": [S floats]},      # where the source has state
            "num_transitions": int, "num_trajectories": int,
            "armdata": {...how they were computed: version, quantile method, rank error bound, cache key}}}

Readers look values up as ``stats[name]["action"]["q01"]``; the extra ``armdata`` entry sits inside the
dataset's entry (never at the top level, where it would look like a dataset to an ``unnorm_key`` lookup).

How each figure merges (an accumulator is built per bundle and merged in any order and grouping):

- count, mean and the sum of squared deviations (M2) by Chan et al.'s pairwise update in float64, which stays
  accurate where the naive sum of squares cancels catastrophically; std is population std (``np.std``,
  ddof=0), as OpenVLA computes it;
- min / max elementwise;
- quantiles: every value is kept (per dimension) while the dataset holds at most ``exact_limit`` values per
  dimension, so q01/q99 equal ``np.quantile`` (linear interpolation) exactly. Past that, values go into a
  :class:`QuantileSketch`, a mergeable compactor sketch whose worst-case rank error is tracked as it runs and
  written to the file. Merging quantiles by averaging per-shard quantiles (a known bug elsewhere) is wrong and
  is never done here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from armdata.schemas.errors import RecordError

logger = logging.getLogger(__name__)

# Bump when the numbers written for the same input change (cache keys include it).
STATS_VERSION = "2"
# Values per dimension kept exactly. fractal20220817_data (RT-1), the largest common source, has ~3.8M steps;
# 8M values x 4 bytes = 32 MB per dimension.
DEFAULT_EXACT_LIMIT = 8_000_000
# Sketch buffer size per level: worst-case normalized rank error <= levels / (2k) ~ 0.05% at 4M values.
DEFAULT_SKETCH_K = 8192
QUANTILES = (0.01, 0.99)
# Canonical 7-D action: the 6 arm dims are normalized, the gripper is not (OpenVLA/MolmoAct mask).
ACTION_MASK = [True] * 6 + [False]
MIN_TRANSITIONS = 2


class QuantileSketch:
    """A mergeable quantile sketch for one dimension, with a deterministic worst-case rank error bound.

    Items live in levels; an item at level h stands for 2**h values. When level h holds ``2k`` items or more it
    is sorted and every other item (alternating the starting offset, so errors tend to cancel) moves up to
    level h+1; an odd leftover (the largest) stays. Such a compaction changes the estimated rank of any value
    by at most 2**h, so the sum of 2**h over all compactions (``rank_error``) bounds the error of every rank
    estimate; merging two sketches adds their bounds. Each compaction at level h consumes at least 2k items
    and at most n / 2**h items ever reach level h, so the bound is at most n * levels / (2k).
    """

    def __init__(self, k: int = DEFAULT_SKETCH_K):
        if k < 2:
            raise ValueError("sketch k must be >= 2")
        self.k = int(k)
        self.levels: list[np.ndarray] = []
        self.flips: list[int] = []
        self.n = 0
        self.rank_error = 0  # absolute, in values

    def update(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size == 0:
            return
        self._add(0, v)
        self.n += int(v.size)
        self._compress()

    def merge(self, other: QuantileSketch) -> None:
        if other.k != self.k:
            raise ValueError(f"cannot merge sketches with k={self.k} and k={other.k}")
        for h, items in enumerate(other.levels):
            if items.size:
                self._add(h, items)
        self.n += other.n
        self.rank_error += other.rank_error
        self._compress()

    def _add(self, h: int, items: np.ndarray) -> None:
        while len(self.levels) <= h:
            self.levels.append(np.empty(0, dtype=np.float64))
            self.flips.append(0)
        self.levels[h] = np.concatenate([self.levels[h], items])

    def _compress(self) -> None:
        h = 0
        while h < len(self.levels):
            items = self.levels[h]
            if items.size >= 2 * self.k:
                items = np.sort(items)
                keep_last = items.size % 2
                body, rest = (items[:-1], items[-1:]) if keep_last else (items, items[:0])
                offset = self.flips[h]
                self.flips[h] ^= 1
                self.levels[h] = rest
                self._add(h + 1, body[offset::2])
                self.rank_error += 2**h
            h += 1

    def quantile(self, qs: np.ndarray | list[float]) -> np.ndarray:
        """Estimated quantiles: the value at rank ``q * (n - 1)`` among the weighted items."""
        if self.n == 0:
            raise ValueError("empty sketch")
        items = np.concatenate(self.levels)
        weights = np.concatenate([np.full(lv.size, 2**h, dtype=np.int64) for h, lv in enumerate(self.levels)])
        order = np.argsort(items, kind="stable")
        items, cum = items[order], np.cumsum(weights[order])
        ranks = np.asarray(qs, dtype=np.float64) * (self.n - 1)
        idx = np.searchsorted(cum, np.floor(ranks), side="right")
        return items[np.minimum(idx, items.size - 1)]

    @property
    def normalized_rank_error(self) -> float:
        """Bound on |estimated rank - true rank| / n for any value (+1 value for picking an item at a rank)."""
        return (self.rank_error + 1) / self.n if self.n else 0.0

    @property
    def size(self) -> int:
        return int(sum(lv.size for lv in self.levels))


class BlockAccumulator:
    """Running statistics of one block (action or proprio) of one dataset: [N, D] rows added in batches.

    Rows added are first kept in ``pending`` (no arithmetic per episode: an episode is often 10 rows, and
    per-call numpy overhead would dominate) and folded into the moments, min/max and, past the exact limit,
    the sketches in bulk by ``_flush`` once enough are pending, on merge, on compact and before results.
    """

    FLUSH_ROWS = 65_536

    def __init__(self, dim: int, exact_limit: int = DEFAULT_EXACT_LIMIT, sketch_k: int = DEFAULT_SKETCH_K):
        self.dim = int(dim)
        self.exact_limit = int(exact_limit)
        self.sketch_k = int(sketch_k)
        self.n = 0  # rows folded into the moments
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros(dim, dtype=np.float64)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.values: list[np.ndarray] | None = []  # exact mode: every folded row, in batches of [n_i, D]
        self.sketches: list[QuantileSketch] | None = None

    @property
    def count(self) -> int:
        """Rows seen, folded or pending."""
        return self.n + self.pending_rows

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected rows of width {self.dim}, got shape {x.shape}")
        if x.shape[0] == 0:
            return
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        self.pending.append(x)
        self.pending_rows += x.shape[0]
        if self.pending_rows >= self.FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        x = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending, axis=0)
        self.pending, self.pending_rows = [], 0
        x64 = x.astype(np.float64)
        mb = x64.mean(axis=0)
        self._merge_moments(x64.shape[0], mb, ((x64 - mb) ** 2).sum(axis=0))
        self.min = np.minimum(self.min, x64.min(axis=0))
        self.max = np.maximum(self.max, x64.max(axis=0))
        if self.values is not None:
            self.values.append(x)
            self._maybe_switch_to_sketch()
        else:
            for d, sk in enumerate(self.sketches):
                sk.update(x64[:, d])

    def _merge_moments(self, nb: int, mb: np.ndarray, m2b: np.ndarray) -> None:
        # Chan, Golub & LeVeque's pairwise combination of (count, mean, M2).
        na = self.n
        n = na + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (na * nb / n)
        self.n = n

    def _maybe_switch_to_sketch(self) -> None:
        if self.values is not None and self.n > self.exact_limit:
            logger.info("more than %d values per dimension: quantiles switch to a sketch (k=%d)",
                        self.exact_limit, self.sketch_k)
            self.sketches = [QuantileSketch(self.sketch_k) for _ in range(self.dim)]
            for batch in self.values:
                for d, sk in enumerate(self.sketches):
                    sk.update(batch[:, d])
            self.values = None

    def merge(self, other: BlockAccumulator) -> None:
        if other.dim != self.dim:
            raise ValueError(f"cannot merge blocks of width {self.dim} and {other.dim}")
        self._flush()
        other._flush()
        if other.n == 0:
            return
        self._merge_moments(other.n, other.mean, other.m2)
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        if self.values is not None and other.values is not None:
            self.values.extend(other.values)
            self._maybe_switch_to_sketch()
            return
        if self.values is not None:  # self exact, other sketched: take over other's sketches
            mine = self.values
            self.values = None
            self.sketches = [QuantileSketch(self.sketch_k) for _ in range(self.dim)]
            for d, sk in enumerate(self.sketches):
                sk.merge(other.sketches[d])
            for batch in mine:
                for d, sk in enumerate(self.sketches):
                    sk.update(batch[:, d])
            return
        for d, sk in enumerate(self.sketches):
            if other.values is not None:
                for batch in other.values:
                    sk.update(batch[:, d])
            else:
                sk.merge(other.sketches[d])

    def compact(self) -> None:
        """Fold pending rows, and keep one array instead of many batches (smaller to pickle between bundles)."""
        self._flush()
        if self.values is not None and len(self.values) > 1:
            self.values = [np.concatenate(self.values, axis=0)]

    @property
    def exact(self) -> bool:
        self._flush()
        return self.values is not None

    def quantiles(self, qs=QUANTILES) -> np.ndarray:
        """[len(qs), D] quantiles: ``np.quantile`` (linear) while exact, else the sketch's estimates."""
        self._flush()
        if self.n == 0:
            raise ValueError("no values")
        if self.values is not None:
            allv = np.concatenate(self.values, axis=0)
            return np.stack([np.quantile(allv[:, d].astype(np.float64), qs) for d in range(self.dim)], axis=1)
        return np.stack([s.quantile(qs) for s in self.sketches], axis=1)

    def rank_error_bound(self) -> float:
        self._flush()
        if self.values is not None:
            return 0.0
        return float(max(s.normalized_rank_error for s in self.sketches))

    def result(self) -> dict[str, list]:
        self._flush()
        q = self.quantiles(QUANTILES)
        mean, m2 = self.mean, self.m2
        if self.values is not None:
            # Exact mode: mean and M2 from the values in sorted order, so the figures do not depend on the order
            # episodes arrived in (runners and worker counts differ in it) down to the last bit.
            v = np.sort(np.concatenate(self.values, axis=0).astype(np.float64), axis=0)
            mean = v.sum(axis=0) / v.shape[0]
            m2 = ((v - mean) ** 2).sum(axis=0)
        std = np.sqrt(np.maximum(m2 / self.n, 0.0))
        return {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "max": self.max.tolist(),
            "min": self.min.tolist(),
            "q01": q[0].tolist(),
            "q99": q[1].tolist(),
        }


class DatasetAccumulator:
    """Everything ``dataset_statistics.json`` says about one dataset, mergeable in any order."""

    def __init__(self, exact_limit: int = DEFAULT_EXACT_LIMIT, sketch_k: int = DEFAULT_SKETCH_K):
        self.exact_limit = int(exact_limit)
        self.sketch_k = int(sketch_k)
        self.action: BlockAccumulator | None = None
        self.proprio: BlockAccumulator | None = None
        self.num_trajectories = 0

    @property
    def num_transitions(self) -> int:
        return self.action.count if self.action is not None else 0

    def _block(self, current: BlockAccumulator | None, dim: int) -> BlockAccumulator:
        return current if current is not None else BlockAccumulator(dim, self.exact_limit, self.sketch_k)

    def add_episode(self, actions: np.ndarray, proprio: np.ndarray | None = None) -> None:
        """One episode: actions [T, 7] (canonical, finite) and proprio [T, S] or None."""
        actions = np.asarray(actions)
        self.action = self._block(self.action, actions.shape[1])
        self.action.add(actions)
        if proprio is not None:
            proprio = np.asarray(proprio)
            self.proprio = self._block(self.proprio, proprio.shape[1])
            self.proprio.add(proprio)
        self.num_trajectories += 1

    def merge(self, other: DatasetAccumulator) -> None:
        for name in ("action", "proprio"):
            theirs = getattr(other, name)
            if theirs is None:
                continue
            mine = getattr(self, name)
            if mine is None:
                setattr(self, name, theirs)
            else:
                mine.merge(theirs)
        self.num_trajectories += other.num_trajectories

    def compact(self) -> None:
        for block in (self.action, self.proprio):
            if block is not None:
                block.compact()

    def to_statistics(self, name: str, cache_key: str | None = None) -> dict[str, Any]:
        """This dataset's entry of dataset_statistics.json; RecordError when it has under 2 transitions."""
        if self.num_transitions < MIN_TRANSITIONS:
            raise RecordError(name, None, None, "action", "too_few_transitions",
                              f"the dataset has {self.num_transitions} valid transitions; statistics need at "
                              f"least {MIN_TRANSITIONS}")
        action = self.action.result()
        width = self.action.dim
        action["mask"] = ACTION_MASK if width == len(ACTION_MASK) else [True] * (width - 1) + [False]
        out: dict[str, Any] = {"action": action}
        if self.proprio is not None and self.proprio.count:
            out["proprio"] = self.proprio.result()
        out["num_transitions"] = int(self.num_transitions)
        out["num_trajectories"] = int(self.num_trajectories)
        blocks = [b for b in (self.action, self.proprio) if b is not None]
        exact = all(b.exact for b in blocks)
        out["armdata"] = {
            "statistics_version": STATS_VERSION,
            "quantiles": "exact (numpy linear interpolation)" if exact else f"sketch (compactor, k={self.sketch_k})",
            "quantile_rank_error_bound": max(b.rank_error_bound() for b in blocks),
            "exact_limit": self.exact_limit,
            "std": "population (ddof=0)",
            "cache_key": cache_key,
        }
        return out


# ---------------------------------------------------------------------------------------------------------
# cache keys


def _read_bytes(path: str) -> bytes | None:
    """The file's bytes through Beam's FileSystems (local, gs://, s3://), None when it does not exist."""
    from armdata.pipeline import fs

    if not fs.exists(path):
        return None
    return fs.read_bytes(path)


def dataset_info_digest(data_dir: str) -> str:
    """A hash of the builder directory's ``dataset_info.json`` and ``features.json`` (shard sizes, specs).

    Those files change whenever the data is regenerated, so this stands for the data without reading it.
    """
    h = hashlib.sha256()
    found = False
    for name in ("dataset_info.json", "features.json"):
        body = _read_bytes(data_dir.rstrip("/") + "/" + name)
        h.update(name.encode() + b"\0")
        if body is not None:
            found = True
            h.update(body)
        h.update(b"\0")
    if not found:
        from armdata.pipeline.sources.rlds import DataLocationError

        raise DataLocationError(f"no TFDS builder directory at {data_dir!r} (no dataset_info.json or features.json)")
    return h.hexdigest()


def cache_key(source_fingerprint: str, data_digest: str, exact_limit: int, sketch_k: int) -> str:
    """The key statistics are cached under: what they depend on, and nothing else."""
    body = {
        "source": source_fingerprint,
        "data": data_digest,
        "statistics_version": STATS_VERSION,
        "exact_limit": int(exact_limit),
        "sketch_k": int(sketch_k),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class StatsSettings:
    """How statistics are computed (both settings change the numbers only past ``exact_limit``)."""

    exact_limit: int = DEFAULT_EXACT_LIMIT  # values per dimension kept exactly before the sketch takes over
    sketch_k: int = DEFAULT_SKETCH_K  # sketch buffer per level; rank error bound ~ levels / (2k)


def write_json_atomic(path: str, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file and a rename, so readers never see half a file."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
