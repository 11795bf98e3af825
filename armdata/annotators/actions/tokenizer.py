"""The tokenizer side of action tokens: base vocabulary size and the symbols of the last 256 ids.

MolmoAct maps action bins to the last 256 ids of Qwen2's *base* vocabulary (``vocab_size``, without added
special tokens) and writes them in text as the vocabulary's own symbols (``convert_ids_to_tokens``: byte-level
BPE strings such as ``'Ġë³´'``), not as ``decode(ids)``; its parser maps them back with
``convert_tokens_to_ids``. This module loads a tokenizer through ``transformers.AutoTokenizer`` (hub id or local
directory), exposes exactly those two mappings, and checks that every action symbol survives MolmoAct's
parsing rules.

``make_test_tokenizer`` builds a small deterministic Qwen2-style byte-level BPE tokenizer for tests and the
offline demo; it loads through the same ``AutoTokenizer`` path as the real one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from armdata.annotators.actions.normalize import N_BINS
from armdata.annotators.molmoact_parse import action_list_readable, check_action_symbol, has_non_ascii
from armdata.schemas.errors import ArmdataError

logger = logging.getLogger(__name__)

DEFAULT_TOKENIZER = "Qwen/Qwen2-7B"


class ActionTokenizerError(ArmdataError):
    """The tokenizer cannot carry action tokens (too small, or symbols MolmoAct's parser cannot read back)."""


class ActionTokenizer:
    """Ids <-> symbols for action tokens, around a ``transformers`` tokenizer.

    vocab_size:    the base vocabulary size (added/special tokens excluded), as MolmoAct's decoder uses it
    name_or_path:  the hub id or local directory it was loaded from
    revision:      the hub revision (commit) where known, else the revision asked for, else None
    """

    def __init__(self, tokenizer, name_or_path: str, revision: str | None = None):
        self.tokenizer = tokenizer
        self.name_or_path = str(name_or_path)
        self.revision = revision
        self.vocab_size = int(tokenizer.vocab_size)
        if self.vocab_size < N_BINS:
            raise ActionTokenizerError(f"{name_or_path}: base vocabulary of {self.vocab_size} ids is smaller "
                                       f"than the {N_BINS} action bins")
        self._action_symbols: list[str] | None = None

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_TOKENIZER, revision: str | None = None,
                        check: bool = True) -> ActionTokenizer:
        """Load with ``AutoTokenizer`` from a hub id or a local directory; ``check`` runs ``check_action_range``."""
        from transformers import AutoTokenizer

        name = str(name_or_path)
        known = revision
        if not os.path.isdir(name):
            known = _hub_commit(name, revision)
        kwargs = {"revision": revision} if revision else {}
        try:
            tok = AutoTokenizer.from_pretrained(name, **kwargs)
        except OSError as e:
            raise ActionTokenizerError(f"cannot load tokenizer {name!r}: {e}") from None
        out = cls(tok, name, known)
        if check:
            problems = out.check_action_range()
            if problems:
                shown = "; ".join(f"id {i} {s!r}: {why}" for i, s, why in problems[:5])
                raise ActionTokenizerError(f"{name_or_path}: {len(problems)} action symbols cannot be read back "
                                           f"by MolmoAct's parser ({shown})")
        return out

    def fingerprint(self) -> str:
        """A hash of what action text depends on: the base vocabulary size and the 256 action symbols."""
        body = json.dumps({"vocab_size": self.vocab_size, "symbols": self.action_symbols()}, ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]

    @property
    def action_id_range(self) -> tuple[int, int]:
        """[first, last] ids that carry actions: the last 256 of the base vocabulary."""
        return self.vocab_size - N_BINS, self.vocab_size - 1

    def ids_to_symbols(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Token ids -> the vocabulary's own symbols (``convert_ids_to_tokens``), never ``decode``."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        symbols = self.tokenizer.convert_ids_to_tokens(ids)
        missing = [i for i, s in zip(ids, symbols) if s is None]
        if missing:
            raise ActionTokenizerError(f"ids {missing[:5]} are not in the vocabulary of {self.name_or_path}")
        return list(symbols)

    def symbols_to_ids(self, symbols: Sequence[str]) -> list[int]:
        """Symbols -> ids (``convert_tokens_to_ids``); an unknown symbol maps to ``vocab_size`` as MolmoAct does."""
        ids = self.tokenizer.convert_tokens_to_ids(list(symbols))
        return [self.vocab_size if i is None else int(i) for i in ids]

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int | None]:
        """The raw mapping, so this object can stand where MolmoAct's parser expects a tokenizer."""
        return self.tokenizer.convert_tokens_to_ids(list(tokens))

    def action_symbols(self) -> list[str]:
        """The 256 symbols of the action range, in id order."""
        if self._action_symbols is None:
            lo, hi = self.action_id_range
            self._action_symbols = self.ids_to_symbols(range(lo, hi + 1))
        return self._action_symbols

    def check_action_range(self) -> list[tuple[int, str, str]]:
        """(id, symbol, reason) for every action symbol that would not round-trip through MolmoAct's parser.

        A symbol must read back as itself between commas, and must map back to its own id (a symbol shared
        by two ids, or an added token shadowing it, would decode to the wrong bin).
        """
        lo, _ = self.action_id_range
        problems: list[tuple[int, str, str]] = []
        symbols = self.action_symbols()
        back = self.tokenizer.convert_tokens_to_ids(symbols)
        for k, (s, b) in enumerate(zip(symbols, back)):
            i = lo + k
            why = check_action_symbol(s)
            if why is None and b != i:
                why = f"maps back to id {b}"
            if why:
                problems.append((i, s, why))
        return problems

    def ascii_only_action_ids(self) -> list[int]:
        """Action ids whose symbol is plain ASCII: a list made only of these is skipped by MolmoAct's parser."""
        lo, _ = self.action_id_range
        return [lo + k for k, s in enumerate(self.action_symbols()) if not has_non_ascii(s)]

    def list_readable(self, ids: Sequence[int]) -> bool:
        """Whether one action's ids, rendered as text, would be found by MolmoAct's parser."""
        return action_list_readable(self.ids_to_symbols(ids))


def _hub_commit(name: str, revision: str | None) -> str | None:
    """The commit a hub revision points to (best effort: the revision asked for when it cannot be resolved)."""
    try:
        from transformers.utils.hub import resolve_revision
    except ImportError:
        return revision
    resolved = resolve_revision(name, revision)
    return getattr(resolved, "resolved", None) or (str(resolved) if resolved else None)


# ---------------------------------------------------------------------------------------------------------
# A small Qwen2-style tokenizer for tests and the offline demo.


def bytes_to_unicode() -> dict[int, str]:
    """The byte-level BPE alphabet (GPT-2 / Qwen2): each byte -> one printable character.

    Printable Latin-1 bytes map to themselves; the others (controls, space, NBSP, soft hyphen) are shifted to
    code points from 256 up, so that every symbol is printable and contains no whitespace.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    mapping: dict[int, str] = {}
    shift = 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


# English merges first (so ordinary text tokenizes sensibly), then every Cyrillic character (U+0400..U+04FF,
# 2 UTF-8 bytes each), then " " + each basic Cyrillic letter. The vocabulary ends with non-ASCII symbols,
# like Qwen2's, and is large enough that its last 256 ids are ordinary merged symbols.
_ENGLISH_PAIRS = ("th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed",
                  "is", "it", "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le")
_ENGLISH_WORDS = ("the", "robot", "gripper", "action", "depth", "trajectory", "task", "pick", "place", "put",
                  "move", "open", "close", "image", "end", "effector", "take", "should", "map", "what", "is",
                  "of", "to", "on", "in", "and")


def _build_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    b2u = bytes_to_unicode()
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []

    def add(sym: str) -> None:
        if sym not in vocab:
            vocab[sym] = len(vocab)

    def merge(a: str, b: str) -> str:
        if a + b not in vocab:
            merges.append((a, b))
            add(a + b)
        return a + b

    for b in range(256):
        add(b2u[b])
    space = b2u[ord(" ")]
    for c in "abcdefghijklmnopqrstuvwxyz":
        merge(space, c)
    for pair in _ENGLISH_PAIRS:
        merge(pair[0], pair[1])
    for word in _ENGLISH_WORDS:
        # Left-to-right merges build each word (and its space-prefixed form) from symbols that already exist.
        for prefix in ("", space):
            cur = prefix + word[0] if prefix else word[0]
            for ch in word[1:]:
                cur = merge(cur, ch)
    for cp in range(0x400, 0x500):
        b = chr(cp).encode("utf-8")
        merge(b2u[b[0]], b2u[b[1]])
    for cp in range(0x430, 0x450):  # basic lowercase letters, space-prefixed
        b = chr(cp).encode("utf-8")
        merge(space, b2u[b[0]] + b2u[b[1]])
    for cp in range(0x410, 0x430):  # basic uppercase letters, space-prefixed
        b = chr(cp).encode("utf-8")
        merge(space, b2u[b[0]] + b2u[b[1]])
    return vocab, merges


def make_test_tokenizer(directory: str | os.PathLike) -> str:
    """Write a small deterministic Qwen2-style byte-level BPE tokenizer to ``directory``; returns the path.

    Built as a real ``Qwen2Tokenizer`` (same pre-tokenizer, byte-level alphabet, ``<|endoftext|>`` added after
    the base vocabulary) and saved with ``save_pretrained``, so ``AutoTokenizer.from_pretrained(path)`` and
    ``ActionTokenizer.from_pretrained(path)`` load it as they would load Qwen2. The same call always writes
    the same vocabulary.
    """
    from transformers import Qwen2Tokenizer

    vocab, merges = _build_vocab()
    tok = Qwen2Tokenizer(vocab=dict(vocab), merges=list(merges))
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(path))
    logger.debug("test tokenizer with %d base symbols written to %s", len(vocab), path)
    return str(path)
