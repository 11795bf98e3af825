"""MolmoAct's released answer-parsing rules, re-implemented from their description.

MolmoAct's ``modeling_molmoact.py`` reads a generated answer with three helpers; a sample we write is only
usable if these rules read back exactly what we meant. The rules, as released:

- numbers: ``[+-]?(?:\\d+(?:\\.\\d+)?|\\.\\d+)(?:[eE][+-]?\\d+)?`` matched against the whole item
  (anchored at both ends); integral values come back as int, others as float.
- an item of a list: the text between commas, whitespace stripped, then ``"`` stripped, then ``'`` stripped.
- depth: every ``<DEPTH_START>(.*?)<DEPTH_END>`` (non-greedy, across newlines), inner text or with its tags.
- trace: outer blocks ``[ ... ]`` that may hold one level of inner lists; every inner ``[...]`` of a block
  split into items; a block counts when it has at least ``min_points`` inner lists and each has exactly
  ``point_len`` items (any length when None), all numbers.
- action: every innermost ``[...]`` (no ``[`` or ``]`` inside) split into items; lists of the wrong length
  (when ``only_len`` is given) are skipped, lists made only of numbers are skipped (coordinates), and, by
  default, lists without any non-ASCII character (code point > 127) in any item are skipped (plain words).
  Items are token *symbols*; ids come from ``convert_tokens_to_ids`` (an unknown symbol counts as
  ``vocab_size``) and bins from ``clip(vocab_size - id - 1, 0, 254)`` into the 255 bin centres.

Consequence for the text we write: an action symbol must not contain ``,`` ``[`` ``]``, must not start or end
with whitespace or quotes, and each action list needs at least one non-ASCII symbol. ``check_action_symbol``
states that per symbol; ``action_tokenizer`` checks the whole action range of a tokenizer with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from armdata.annotators.actions.normalize import ActionStats, decode

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?$")
_DEPTH = re.compile(r"<DEPTH_START>(.*?)<DEPTH_END>", re.DOTALL)
# A bracketed block holding plain text and/or one level of inner bracketed lists.
_OUTER_BLOCK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])+\]")
# An innermost bracketed list (nothing bracketed inside), capturing its contents.
_INNER_LIST = re.compile(r"\[([^\[\]]+)\]")


class TokenizerLike(Protocol):
    """What the action parser needs of a tokenizer (a transformers tokenizer or ``ActionTokenizer``)."""

    vocab_size: int

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int | None]: ...


def is_number(item: str) -> bool:
    return _NUMBER.match(item) is not None


def has_non_ascii(item: str) -> bool:
    return any(ord(ch) > 127 for ch in item)


def _number(item: str) -> int | float:
    v = float(item)
    return int(v) if v.is_integer() else v


def _items(inner: str) -> list[str]:
    return [p.strip().strip('"').strip("'") for p in inner.split(",")]


def extract_depth_string(text: str, include_tags: bool = False) -> list[str]:
    """Every depth string in ``text``: the text between the tags, or the whole tagged span."""
    group = 0 if include_tags else 1
    return [m.group(group) for m in _DEPTH.finditer(text)]


def extract_trace_lists(text: str, point_len: int | None = 2, min_points: int = 1) -> list[list[list[int | float]]]:
    """Every numeric list of points in ``text`` (``[[u, v], [u, v], ...]``), as lists of numbers."""
    traces: list[list[list[int | float]]] = []
    for block in _OUTER_BLOCK.findall(text):
        rows = _INNER_LIST.findall(block)
        if len(rows) < min_points:
            continue
        points: list[list[int | float]] = []
        for row in rows:
            items = _items(row)
            if point_len is not None and len(items) != point_len:
                break
            if not all(is_number(p) for p in items):
                break
            points.append([_number(p) for p in items])
        else:
            traces.append(points)
    return traces


def extract_action_token_lists(text: str, only_len: int | None = None, require_non_ascii: bool = True) -> list[list[str]]:
    """Every list of action symbols in ``text``, in order (see the module docstring for what counts)."""
    lists: list[list[str]] = []
    for inner in _INNER_LIST.findall(text):
        items = _items(inner)
        if only_len is not None and len(items) != only_len:
            continue
        if all(is_number(p) for p in items):
            continue
        if require_non_ascii and not any(has_non_ascii(p) for p in items):
            continue
        lists.append(items)
    return lists


def extract_action_id_lists(text: str, tokenizer: TokenizerLike, only_len: int | None = 7) -> list[list[int]]:
    """Every action list in ``text`` as token ids, an unknown symbol mapped to ``vocab_size`` as MolmoAct does."""
    out: list[list[int]] = []
    vocab_size = int(tokenizer.vocab_size)
    for symbols in extract_action_token_lists(text, only_len=only_len):
        ids = tokenizer.convert_tokens_to_ids(list(symbols))
        out.append([vocab_size if i is None else int(i) for i in ids])
    return out


def parse_actions(text: str, tokenizer: TokenizerLike, stats: ActionStats) -> list[np.ndarray]:
    """MolmoAct's ``parse_action``: every action list in ``text`` decoded and un-normalized, float64 [D] each."""
    return [
        decode(np.asarray(ids, dtype=np.int64), stats, int(tokenizer.vocab_size))
        for ids in extract_action_id_lists(text, tokenizer, only_len=stats.dim)
    ]


def check_action_symbol(symbol: str) -> str | None:
    """Why MolmoAct's parser would not read ``symbol`` back as itself inside an action list, or None."""
    if symbol == "":
        return "empty symbol"
    for ch in ",[]":
        if ch in symbol:
            return f"contains {ch!r}"
    if _items(symbol) != [symbol]:
        return "starts or ends with whitespace or a quote"
    return None


def action_list_readable(symbols: Sequence[str]) -> bool:
    """Whether one rendered action list survives MolmoAct's filters (not all numbers, some non-ASCII)."""
    return not all(is_number(s) for s in symbols) and any(has_non_ascii(s) for s in symbols)


def summarize_parse(text: str, tokenizer: TokenizerLike) -> dict[str, Any]:
    """What MolmoAct would read from an answer: depth strings, traces and action id lists (for audits)."""
    return {
        "depth": extract_depth_string(text, include_tags=True),
        "trace": extract_trace_lists(text, point_len=2, min_points=1),
        "action_ids": extract_action_id_lists(text, tokenizer, only_len=None),
    }
