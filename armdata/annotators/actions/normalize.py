"""Action normalization and action tokens, exactly as MolmoAct (and OpenVLA) read them.

Pure numpy: no Beam, no tokenizer. The tokenizer only enters through its base ``vocab_size`` and its symbols
(see ``action_tokenizer.py``).

Encoding (per dimension of the canonical 7-D action ``[x, y, z, roll, pitch, yaw, gripper]``):

- dims where ``mask`` is true: ``2 * (a - q01) / (q99 - q01) - 1`` clipped to [-1, 1]; 0 where ``q99 == q01``.
  q01/q99 rather than min/max because a handful of outlier steps (teleoperation glitches) would otherwise
  squeeze every ordinary action into a few bins.
- dims where ``mask`` is false (the gripper): the value itself, clipped to [-1, 1]. MolmoAct's decoder always
  treats the last dimension as unmasked, whatever the file says, so ``ActionStats`` does too.
- ``d = np.digitize(x, np.linspace(-1, 1, 256))``, an integer in 1..256 for x in [-1, 1];
  token id ``= vocab_size - d``: the last 256 ids of the tokenizer's base vocabulary.

Decoding (MolmoAct's ``parse_action``): ``clip(vocab_size - id - 1, 0, 254)`` indexes the 255 bin centres
(midpoints of the 256 edges), then un-normalization ``0.5 * (x + 1) * (q99 - q01) + q01`` on masked dims.
For any value inside [-1, 1], the decoded value is within half a bin width (1/255) of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ACTION_DIM = 7
N_BINS = 256
# 256 edges in [-1, 1]; np.digitize against them gives 1..256 for values in [-1, 1].
BIN_EDGES = np.linspace(-1.0, 1.0, N_BINS)
# 255 centres between consecutive edges: what a token decodes to.
BIN_CENTERS = (BIN_EDGES[:-1] + BIN_EDGES[1:]) / 2.0
# Width of one bin in normalized units (2 / 255).
BIN_WIDTH = float(BIN_EDGES[1] - BIN_EDGES[0])
DEFAULT_CHUNK = 8


@dataclass(frozen=True)
class ActionStats:
    """Per-dimension normalization bounds of one dataset (the ``action`` block of dataset_statistics.json).

    q01, q99: float64 [D] 1st and 99th percentiles.  mask: bool [D], true where the dimension is normalized.
    """

    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        q01 = np.asarray(self.q01, dtype=np.float64)
        q99 = np.asarray(self.q99, dtype=np.float64)
        mask = np.asarray(self.mask, dtype=bool)
        if q01.ndim != 1 or q01.shape != q99.shape or q01.shape != mask.shape:
            raise ValueError(f"q01, q99 and mask must be 1-D of one length, got {q01.shape} {q99.shape} {mask.shape}")
        if not (np.isfinite(q01).all() and np.isfinite(q99).all()):
            raise ValueError("q01 and q99 must be finite")
        if (q99 < q01).any():
            raise ValueError(f"q99 < q01 in dims {np.nonzero(q99 < q01)[0].tolist()}")
        for name, v in (("q01", q01), ("q99", q99), ("mask", mask)):
            v.setflags(write=False)
            object.__setattr__(self, name, v)

    @property
    def dim(self) -> int:
        return int(self.q01.shape[0])

    @classmethod
    def from_json(cls, stats: Mapping[str, Any]) -> ActionStats:
        """From one dataset's entry of dataset_statistics.json (``stats[name]``) or its ``action`` block.

        A missing mask means every dimension but the last is normalized. The last dimension (the gripper) is
        never normalized, as MolmoAct's decoder forces ``mask[-1] = False``; a file saying otherwise is
        overridden with a warning, so that our tokens decode to what we encoded.
        """
        block = stats["action"] if "action" in stats else stats
        q01 = np.asarray(block["q01"], dtype=np.float64)
        q99 = np.asarray(block["q99"], dtype=np.float64)
        if "mask" in block:
            mask = np.array(block["mask"], dtype=bool)
        else:
            mask = np.ones_like(q01, dtype=bool)
        if mask.size and mask[-1]:
            logger.warning("statistics mark the last action dimension as normalized; MolmoAct never "
                           "normalizes it (gripper), so it is treated as unnormalized")
            mask[-1] = False
        return cls(q01=q01, q99=q99, mask=mask)

    def to_json(self) -> dict[str, list]:
        return {"q01": self.q01.tolist(), "q99": self.q99.tolist(), "mask": self.mask.tolist()}


def _check_width(x: np.ndarray, stats: ActionStats, what: str) -> None:
    if x.shape[-1:] != (stats.dim,):
        raise ValueError(f"{what} must have last dimension {stats.dim}, got shape {x.shape}")


def normalize(actions: np.ndarray, stats: ActionStats) -> np.ndarray:
    """Actions [..., D] -> normalized float64 [..., D] in [-1, 1] (see the module docstring for the rule)."""
    a = np.asarray(actions, dtype=np.float64)
    _check_width(a, stats, "actions")
    if not np.isfinite(a).all():
        raise ValueError("actions must be finite")
    span = stats.q99 - stats.q01
    flat = span == 0
    safe = np.where(flat, 1.0, span)
    scaled = 2.0 * (a - stats.q01) / safe - 1.0
    scaled = np.where(flat, 0.0, scaled)
    out = np.where(stats.mask, scaled, a)
    return np.clip(out, -1.0, 1.0)


# MolmoAct's released ActionProcessor (allenai/molmoact preprocess/processors.py) differs from the rule above in
# four ways, all reproduced by normalize_molmoact: float32 arithmetic, ``eps = 1e-8`` added to q99 - q01,
# "zero range" judged by ``np.isclose`` (not ==), and the gripper written as ``1 - a`` (so 1 = closed in the
# tokens when the source's 1 = open) rather than the value itself. It normalizes the first ``ACTION_DIM - 1``
# dims whatever the statistics' mask says.
MOLMOACT_EPS = 1e-8


def normalize_molmoact(actions: np.ndarray, stats: ActionStats) -> np.ndarray:
    """Actions [..., 7] -> float32 [..., 7] exactly as MolmoAct's ``normalize_action_bounds_q99`` then the clip of
    its ``tokenize_action``: dims 0..5 ``clip(2 (a - q01) / (q99 - q01 + 1e-8) - 1, -1, 1)`` in float32, 0 where
    ``isclose(q99, q01)``; the gripper ``clip(1 - a, -1, 1)``."""
    a = np.asarray(actions, dtype=np.float32)
    _check_width(a, stats, "actions")
    if not np.isfinite(a).all():
        raise ValueError("actions must be finite")
    n = stats.dim - 1
    q01 = stats.q01.astype(np.float32)[:n]
    q99 = stats.q99.astype(np.float32)[:n]
    out = a.copy()
    arm = np.clip(2 * (a[..., :n] - q01) / (q99 - q01 + MOLMOACT_EPS) - 1.0, -1.0, 1.0)
    out[..., :n] = np.where(np.isclose(q99, q01), np.float32(0.0), arm)
    out[..., n] = 1.0 - a[..., n]
    return np.clip(out, -1.0, 1.0).astype(np.float32)


# Normalization rule by preset name (AnnotateConfig.preset).
NORMALIZERS = {"molmoact": normalize_molmoact, "armdata": normalize}


def unnormalize(normed: np.ndarray, stats: ActionStats) -> np.ndarray:
    """Normalized [..., D] -> actions float64 [..., D]: ``0.5 * (x + 1) * (q99 - q01) + q01`` where masked."""
    x = np.asarray(normed, dtype=np.float64)
    _check_width(x, stats, "normalized actions")
    un = 0.5 * (x + 1.0) * (stats.q99 - stats.q01) + stats.q01
    return np.where(stats.mask, un, x)


def to_bins(normed: np.ndarray) -> np.ndarray:
    """Normalized values in [-1, 1] -> ``np.digitize`` bins, int64 in 1..256."""
    x = np.asarray(normed, dtype=np.float64)
    if not np.isfinite(x).all() or (np.abs(x) > 1.0).any():
        raise ValueError("normalized values must be finite and inside [-1, 1]")
    return np.digitize(x, BIN_EDGES).astype(np.int64)


def bins_to_ids(d: np.ndarray, vocab_size: int) -> np.ndarray:
    """Bins 1..256 -> token ids ``vocab_size - d``: the last 256 ids of the base vocabulary."""
    d = np.asarray(d, dtype=np.int64)
    if ((d < 1) | (d > N_BINS)).any():
        raise ValueError(f"bins must lie in 1..{N_BINS}")
    if vocab_size < N_BINS:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the {N_BINS} action bins")
    return int(vocab_size) - d


def ids_to_bins(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Token ids -> bin-centre indices 0..254 as MolmoAct computes them: ``clip(vocab_size - id - 1, 0, 254)``."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.clip(int(vocab_size) - ids - 1, 0, BIN_CENTERS.shape[0] - 1)


def ids_to_normalized(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Token ids -> normalized values: the bin centres MolmoAct decodes them to."""
    return BIN_CENTERS[ids_to_bins(ids, vocab_size)]


def encode(actions: np.ndarray, stats: ActionStats, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Actions [..., D] -> (bins 1..256, token ids), both int64 [..., D]."""
    d = to_bins(normalize(actions, stats))
    return d, bins_to_ids(d, vocab_size)


def decode(ids: np.ndarray, stats: ActionStats, vocab_size: int) -> np.ndarray:
    """Token ids [..., D] -> continuous actions float64 [..., D], as MolmoAct's ``parse_action`` does."""
    return unnormalize(ids_to_normalized(ids, vocab_size), stats)


def chunk(actions: np.ndarray, t: int, n: int = DEFAULT_CHUNK) -> np.ndarray:
    """Actions t..t+n-1 of an episode [T, D] -> [n, D]; steps past the end repeat the episode's last action.

    Padding with the last action (rather than zeros) keeps a padded chunk a plausible command: hold the final
    motion and gripper state instead of a "zero delta, gripper closed" that never happened.
    """
    a = np.asarray(actions)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"actions must be [T>0, D], got shape {a.shape}")
    if not 0 <= t < a.shape[0]:
        raise IndexError(f"step {t} outside an episode of {a.shape[0]} steps")
    if n < 1:
        raise ValueError(f"chunk length must be >= 1, got {n}")
    idx = np.minimum(np.arange(t, t + n), a.shape[0] - 1)
    return a[idx]


def render_action_text(symbols: Sequence[str]) -> str:
    """One action's symbols -> ``[s1, s2, ..., s7]`` (the form MolmoAct's parser reads back)."""
    return "[" + ", ".join(symbols) + "]"


def render_action_chunk_text(symbol_lists: Sequence[Sequence[str]]) -> str:
    """A chunk of actions -> ``[[s1, ..., s7], [s1, ..., s7], ...]``; the parser finds each inner list."""
    return "[" + ", ".join(render_action_text(s) for s in symbol_lists) + "]"
