"""Checks on a finished output folder; each failure names the shard, the sample key and the field.

What is checked (issue 7), reading only what is on disk:

- shards: every ``*.tar`` has its manifest (and every manifest its tar); sha256, byte count, sample count,
  key list and episode list match the manifest; names follow ``armdata-IIIII-of-NNNNN.tar``, every index
  present.
- samples (:func:`check_sample`): members ``jpg`` + ``json`` + one ``{view}.jpg`` per extra view (and
  ``traj.*``), images decode at the annotation's size; the key matches the annotation and
  ``{source}__{episode}__{step:05d}``; 100 depth codes in [0, 128); trace 1..5 points in [0, 255], its first
  point at this step's gripper point, None exactly when flagged ``no_trace``; action ids within the last 256
  of the vocabulary, bins = vocab - id, and the id decodes (``clip(vocab - id - 1, 0, 254)``) to within half
  a bin of the stored normalized value; normalized values agree with the raw action and the statistics;
  symbols are the tokenizer's own; every applicable template has its text, and the text is exactly what the
  template renders from the annotation.
- across samples: keys unique across shards; every episode has each of its steps once; each trace equals the
  trace rebuilt from the episode's per-step gripper points (the trace builder's own rule).
- side files: index rows match the samples one for one and column by column; statistics exist for every
  source; dead letters are RecordError records; run.json's config hash matches the manifests.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from armdata.annotators.actions import normalize as act
from armdata.annotators.trace import build_traces, to_uv255, trace_text
from armdata.pipeline.output import reader as rd
from armdata.schemas.sample import (
    DEPTH_CODEBOOK,
    FLAG_EMPTY_INSTRUCTION,
    FLAG_NO_POINT,
    FLAG_NO_TRACE,
    INDEX_COLUMNS,
    FAILURES_FILE,
    INDEX_FILE,
    NUM_ACTION_BINS,
    NUM_DEPTH_CODES,
    REQUIRED_MEMBERS,
    SHARDS_DIR,
    STATS_FILE,
    TRACE_MAX_POINTS,
    SampleAnnotation,
    ShardManifest,
    sample_key,
    shard_name,
)
from armdata.schemas.templates import TEMPLATES, TemplateSettings, TextInputs, render_all

logger = logging.getLogger(__name__)

# Drawn-trace images a sample may carry besides its camera images (the annotate job writes a PNG so the drawn
# pixels are exactly the loader's; the schema's docstring names a JPEG).
DRAWN_MEMBERS = ("traj.png", "traj.jpg")
# Half a bin plus float slack: a value inside [-1, 1] decodes to within half a bin width of itself.
_DECODE_TOL = act.BIN_WIDTH / 2 + 1e-9
_NORMALIZE_TOL = 1e-6


@dataclass(frozen=True)
class Failure:
    """One failed check. shard: shard file name (or a side file's name); key: sample key or None; field: the
    member or annotation field (dotted, e.g. ``action.ids``); kind: a short machine-readable word."""

    shard: str | None
    key: str | None
    field: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"shard={self.shard} key={self.key} field={self.field}: {self.kind}: {self.message}"


@dataclass
class CheckReport:
    """The result of :func:`check_output`: failures, what was read, and notes on checks that could not run."""

    out_dir: str
    shards: int = 0
    samples: int = 0
    episodes: int = 0
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(f.kind for f in self.failures).items()))

    def to_dict(self) -> dict:
        return {
            "out_dir": self.out_dir,
            "ok": self.ok,
            "shards": self.shards,
            "samples": self.samples,
            "episodes": self.episodes,
            "failures_by_kind": self.by_kind(),
            "failures": [asdict(f) for f in self.failures],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class CheckContext:
    """What the per-sample checks compare against, read once from the output's side files.

    vocab_size: the action tokenizer's base vocabulary (None: each sample's own ``action.vocab_size`` is used,
      and samples must agree with each other).
    template_names: templates the job rendered (None: every registered template).
    information_phrase: "this"/"these", or None to accept either.
    statistics: source name -> ActionStats (a source missing here is reported once, not per sample).
    symbols_of: ids -> the tokenizer's symbols, or None when the tokenizer could not be loaded.
    preset: the job's preset (run.json ``config.preset``; outputs from before presets are ``armdata``): how raw
      actions normalize and which multi-view wording the text uses.
    """

    vocab_size: int | None = None
    template_names: tuple[str, ...] | None = None
    information_phrase: str | None = None
    statistics: Mapping[str, act.ActionStats] = field(default_factory=dict)
    preset: str = "armdata"
    symbols_of: Callable[[Sequence[int]], list[str]] | None = None
    decode_images: bool = True


# -- one sample ----------------------------------------------------------------------------------------------


def parse_annotation(
    members: Mapping[str, bytes], shard: str | None, key: str | None
) -> tuple[SampleAnnotation | None, list[Failure]]:
    """The ``json`` member as a SampleAnnotation, or None and a failure naming why it could not be read."""
    if "json" not in members:
        return None, [Failure(shard, key, "json", "missing_member", "the sample has no json member")]
    try:
        return SampleAnnotation.from_json(members["json"]), []
    except (ValueError, TypeError, KeyError) as e:
        return None, [
            Failure(shard, key, "json", "unreadable", f"not a SampleAnnotation: {type(e).__name__}: {e}")
        ]


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, bool) and math.isfinite(float(x))


def _image_size(data: bytes) -> tuple[int, int]:
    """(height, width) of an encoded image, fully decoded (a truncated file raises)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.height, im.width


def _check_members(
    ann: SampleAnnotation, members: Mapping[str, bytes], shard: str | None, key: str | None, ctx: CheckContext
) -> list[Failure]:
    out: list[Failure] = []
    views = [f"{v}.jpg" for v in ann.views]
    for m in (*REQUIRED_MEMBERS, *views):
        if m not in members:
            out.append(Failure(shard, key, m, "missing_member", f"member {m!r} is missing"))
    known = {*REQUIRED_MEMBERS, *views, *DRAWN_MEMBERS}
    for m in sorted(set(members) - known):
        out.append(
            Failure(shard, key, m, "unexpected_member", f"member {m!r} is not part of the sample layout")
        )
    if ctx.decode_images:
        want = tuple(int(x) for x in ann.image_size) if len(ann.image_size) == 2 else None
        for m in ("jpg", *views, *DRAWN_MEMBERS):
            if m not in members:
                continue
            try:
                hw = _image_size(members[m])
            except Exception as e:  # Pillow raises many types on bad bytes; all mean "cannot be decoded"
                out.append(Failure(shard, key, m, "undecodable_image", f"{type(e).__name__}: {e}"))
                continue
            # Extra views may have their own size; the primary image and the drawn one have the annotation's.
            if m in ("jpg", *DRAWN_MEMBERS) and want is not None and hw != want:
                out.append(
                    Failure(shard, key, m, "image_size", f"image is {list(hw)}, annotation says {list(want)}")
                )
    return out


def _check_identity(ann: SampleAnnotation, shard: str | None, key: str | None) -> list[Failure]:
    out: list[Failure] = []
    if key is not None and ann.key != key:
        out.append(
            Failure(shard, key, "key", "key_mismatch", f"tar key {key!r} but annotation key {ann.key!r}")
        )
    try:
        expect = sample_key(ann.source, ann.episode, ann.step)
    except Exception as e:  # check_key raises on dots etc.
        out.append(Failure(shard, key, "key", "bad_key", str(e)))
    else:
        if ann.key != expect:
            out.append(
                Failure(shard, key, "key", "key_mismatch", f"annotation key {ann.key!r}, expected {expect!r}")
            )
    if not (_is_int(ann.step) and _is_int(ann.num_steps) and 0 <= ann.step < ann.num_steps):
        out.append(
            Failure(shard, key, "step", "out_of_range", f"step {ann.step} of num_steps {ann.num_steps}")
        )
    if not (len(ann.image_size) == 2 and all(_is_int(x) and x > 0 for x in ann.image_size)):
        out.append(Failure(shard, key, "image_size", "bad_value", f"image_size {ann.image_size!r}"))
    if not isinstance(ann.instruction, str) or not ann.instruction.strip():
        if FLAG_EMPTY_INSTRUCTION not in (ann.flags or []):  # kept on purpose by the source's checks
            out.append(Failure(shard, key, "instruction", "missing", "empty instruction"))
    return out


def _check_depth(ann: SampleAnnotation, shard: str | None, key: str | None) -> list[Failure]:
    codes = ann.depth_codes
    if codes is None:
        return [Failure(shard, key, "depth_codes", "missing", "no depth codes")]
    if len(codes) != NUM_DEPTH_CODES:
        return [
            Failure(
                shard, key, "depth_codes", "wrong_length", f"{len(codes)} codes, expected {NUM_DEPTH_CODES}"
            )
        ]
    bad = [(i, c) for i, c in enumerate(codes) if not (_is_int(c) and 0 <= c < DEPTH_CODEBOOK)]
    if bad:
        return [
            Failure(
                shard,
                key,
                "depth_codes",
                "out_of_range",
                f"{len(bad)} codes outside [0, {DEPTH_CODEBOOK}), first at index {bad[0][0]}: {bad[0][1]!r}",
            )
        ]
    return []


def _check_gripper(ann: SampleAnnotation, shard: str | None, key: str | None) -> list[Failure]:
    out: list[Failure] = []
    uv = ann.gripper.uv
    if uv is not None and not (len(uv) == 2 and all(_is_num(x) for x in uv)):
        out.append(
            Failure(shard, key, "gripper.uv", "bad_value", f"gripper point {uv!r} is not 2 finite numbers")
        )
    if (uv is None) != (FLAG_NO_POINT in ann.flags):
        out.append(
            Failure(
                shard,
                key,
                "gripper.uv",
                "flag_mismatch",
                f"gripper point is {'missing' if uv is None else 'present'} but flag {FLAG_NO_POINT!r} is "
                f"{'absent' if uv is None else 'set'}",
            )
        )
    if not _is_num(ann.gripper.confidence):
        out.append(Failure(shard, key, "gripper.confidence", "bad_value", f"{ann.gripper.confidence!r}"))
    return out


def _check_trace(ann: SampleAnnotation, shard: str | None, key: str | None) -> list[Failure]:
    tr = ann.trace_uv255
    flagged = FLAG_NO_TRACE in ann.flags
    if tr is None:
        if not flagged:
            return [Failure(shard, key, "trace_uv255", "missing", f"no trace and no {FLAG_NO_TRACE!r} flag")]
        return []
    if flagged:
        return [
            Failure(
                shard, key, "trace_uv255", "flag_mismatch", f"a trace on a step flagged {FLAG_NO_TRACE!r}"
            )
        ]
    if not 1 <= len(tr) <= TRACE_MAX_POINTS:
        return [
            Failure(
                shard, key, "trace_uv255", "wrong_length", f"{len(tr)} points, expected 1..{TRACE_MAX_POINTS}"
            )
        ]
    for i, p in enumerate(tr):
        if not (isinstance(p, list) and len(p) == 2 and all(_is_int(x) and 0 <= x <= 255 for x in p)):
            return [
                Failure(
                    shard, key, "trace_uv255", "out_of_range", f"point {i} {p!r} is not 2 ints in [0, 255]"
                )
            ]
    uv = ann.gripper.uv
    if uv is not None and len(uv) == 2 and len(ann.image_size) == 2:
        h, w = ann.image_size
        here = to_uv255(np.asarray(uv, dtype=np.float64), h, w).tolist()
        if tr[0] != here:
            return [
                Failure(
                    shard,
                    key,
                    "trace_uv255",
                    "not_at_step",
                    f"first point {tr[0]} is not this step's gripper point {here}",
                )
            ]
    return []


def _check_action(
    ann: SampleAnnotation, shard: str | None, key: str | None, ctx: CheckContext
) -> list[Failure]:
    out: list[Failure] = []
    a = ann.action
    vocab = a.vocab_size
    if ctx.vocab_size is not None and vocab != ctx.vocab_size:
        out.append(
            Failure(
                shard,
                key,
                "action.vocab_size",
                "mismatch",
                f"vocab_size {vocab}, the job's tokenizer has {ctx.vocab_size}",
            )
        )
    if not (_is_int(vocab) and vocab >= NUM_ACTION_BINS):
        return out + [Failure(shard, key, "action.vocab_size", "bad_value", f"vocab_size {vocab!r}")]
    n = act.ACTION_DIM
    for name in ("raw", "normalized", "bins", "ids", "symbols"):
        if len(getattr(a, name)) != n:
            out.append(
                Failure(
                    shard,
                    key,
                    f"action.{name}",
                    "wrong_length",
                    f"{len(getattr(a, name))} values, expected {n}",
                )
            )
    if out:
        return out
    lo, hi = vocab - NUM_ACTION_BINS, vocab - 1
    bad = [i for i in a.ids if not (_is_int(i) and lo <= i <= hi)]
    if bad:
        return [
            Failure(shard, key, "action.ids", "out_of_range", f"ids {bad} outside the last 256 [{lo}, {hi}]")
        ]
    ids = np.asarray(a.ids, dtype=np.int64)
    if [vocab - b for b in a.bins] != a.ids:
        out.append(Failure(shard, key, "action.bins", "mismatch", f"bins {a.bins} != vocab_size - ids"))
    if not all(_is_num(x) and -1.0 <= float(x) <= 1.0 for x in a.normalized):
        out.append(
            Failure(shard, key, "action.normalized", "out_of_range", f"{a.normalized} outside [-1, 1]")
        )
    else:
        decoded = act.ids_to_normalized(ids, vocab)
        far = np.abs(decoded - np.asarray(a.normalized)) > _DECODE_TOL
        if far.any():
            out.append(
                Failure(
                    shard,
                    key,
                    "action.ids",
                    "not_decodable",
                    f"dims {np.flatnonzero(far).tolist()} decode to {decoded[far].round(4).tolist()}, "
                    f"stored normalized {np.asarray(a.normalized)[far].round(4).tolist()}",
                )
            )
    stats = ctx.statistics.get(ann.source)
    if stats is not None and all(_is_num(x) for x in a.raw) and stats.dim == n:
        expect = act.NORMALIZERS.get(ctx.preset, act.normalize)(np.asarray(a.raw, dtype=np.float64), stats)
        far = np.abs(expect - np.asarray(a.normalized, dtype=np.float64)) > _NORMALIZE_TOL
        if far.any():
            out.append(
                Failure(
                    shard,
                    key,
                    "action.normalized",
                    "mismatch",
                    f"dims {np.flatnonzero(far).tolist()}: raw action normalizes to "
                    f"{expect[far].round(4).tolist()} with the statistics",
                )
            )
    if ctx.symbols_of is not None:
        want = ctx.symbols_of(a.ids)
        if list(a.symbols) != list(want):
            out.append(
                Failure(
                    shard, key, "action.symbols", "mismatch", f"symbols {a.symbols} != tokenizer's {want}"
                )
            )
    if a.chunk_ids is not None:
        rows = a.chunk_ids
        if not rows or any(len(r) != n for r in rows):
            out.append(
                Failure(shard, key, "action.chunk_ids", "wrong_length", "chunk rows must each hold 7 ids")
            )
        elif any(not (_is_int(i) and lo <= i <= hi) for r in rows for i in r):
            out.append(Failure(shard, key, "action.chunk_ids", "out_of_range", f"ids outside [{lo}, {hi}]"))
        elif list(rows[0]) != list(a.ids):
            out.append(
                Failure(
                    shard, key, "action.chunk_ids", "mismatch", "the chunk's first row is not this step's ids"
                )
            )
    return out


def _chunk_text(ann: SampleAnnotation, symbols_of) -> str | None:
    """The chunk as the answer writes it: with the tokenizer, or with the sample's own id -> symbol pairs when
    the chunk uses no other id (else ValueError: the text is then not re-rendered)."""
    rows = ann.action.chunk_ids
    if not rows:
        return None
    if symbols_of is None:
        known = dict(zip(ann.action.ids, ann.action.symbols))
        if any(i not in known for r in rows for i in r):
            raise ValueError("chunk ids without their symbols (tokenizer not loaded)")
        symbols_of = lambda ids: [known[i] for i in ids]  # noqa: E731
    return act.render_action_chunk_text([symbols_of(r) for r in rows])


def expected_text(
    ann: SampleAnnotation, names: Sequence[str] | None, phrase: str, preset: str = "armdata", symbols_of=None
) -> dict[str, dict[str, str]]:
    """What the templates render from this annotation (the text must be exactly this)."""
    from armdata.annotators.depth.tokenizer import depth_text

    inputs = TextInputs(
        instruction=ann.instruction,
        depth=depth_text(ann.depth_codes) if ann.depth_codes is not None else None,
        trace=trace_text(np.asarray(ann.trace_uv255)) if ann.trace_uv255 is not None else None,
        action=act.render_action_text(ann.action.symbols),
        action_chunk=_chunk_text(ann, symbols_of) if preset == "molmoact" and ann.views else None,
    )
    settings = TemplateSettings(information_phrase=phrase, multi_view=bool(ann.views), wording=preset)
    return render_all(inputs, settings, list(names) if names else None)


def _check_text(
    ann: SampleAnnotation, shard: str | None, key: str | None, ctx: CheckContext
) -> list[Failure]:
    out: list[Failure] = []
    phrases = [ctx.information_phrase] if ctx.information_phrase else ["this", "these"]
    try:
        options = [expected_text(ann, ctx.template_names, p, ctx.preset, ctx.symbols_of) for p in phrases]
    except KeyError as e:  # run.json names a template this armdata does not have
        return [Failure(shard, key, "text", "unknown_template", str(e))]
    except (ValueError, TypeError) as e:  # malformed inputs are reported by their own checks
        logger.debug("%s: text not re-rendered: %s", key, e)
        return out
    want_names = set(options[0])
    have = ann.text if isinstance(ann.text, dict) else {}
    for name in sorted(want_names - set(have)):
        out.append(Failure(shard, key, f"text.{name}", "missing_template", f"no text for template {name!r}"))
    for name in sorted(set(have) - want_names):
        why = (
            "not applicable to this step" if name in TEMPLATES.names() else "not a template the job rendered"
        )
        out.append(Failure(shard, key, f"text.{name}", "unexpected_template", f"text for {name!r}: {why}"))
    for name in sorted(want_names & set(have)):
        got = have[name]
        if not (isinstance(got, dict) and got.get("prompt") and got.get("answer")):
            out.append(Failure(shard, key, f"text.{name}", "missing", "prompt or answer is empty"))
            continue
        for part in ("prompt", "answer"):
            if all(got.get(part) != opt[name][part] for opt in options):
                out.append(
                    Failure(
                        shard,
                        key,
                        f"text.{name}.{part}",
                        "text_mismatch",
                        f"the {part} is not what template {name!r} renders from the annotation",
                    )
                )
    return out


def check_sample(
    annotation: SampleAnnotation | bytes | None,
    members: Mapping[str, bytes],
    *,
    shard: str | None = None,
    key: str | None = None,
    ctx: CheckContext | None = None,
) -> list[Failure]:
    """Every per-sample check on one sample; [] when it is good.

    annotation: the parsed ``json`` member (or its bytes, or None to parse it from ``members``); members: the
    sample's members by extension; shard/key: where it was read (named in each failure); ctx: what to compare
    against (vocabulary, templates, statistics, tokenizer symbols).
    """
    ctx = ctx or CheckContext()
    if annotation is None or isinstance(annotation, (bytes, str)):
        src = {**members, "json": annotation} if annotation is not None else members
        annotation, fails = parse_annotation(src, shard, key)
        if annotation is None:
            return fails
    key = key if key is not None else annotation.key
    out: list[Failure] = []
    out += _check_members(annotation, members, shard, key, ctx)
    out += _check_identity(annotation, shard, key)
    out += _check_depth(annotation, shard, key)
    out += _check_gripper(annotation, shard, key)
    out += _check_trace(annotation, shard, key)
    out += _check_action(annotation, shard, key, ctx)
    if not any(f.field.startswith(("depth_codes", "trace_uv255", "action")) for f in out):
        out += _check_text(annotation, shard, key, ctx)
    return out


# -- the whole output ----------------------------------------------------------------------------------------


@dataclass
class _Seen:
    """What the cross-sample checks keep of one sample (no images)."""

    shard: str
    key: str
    source: str
    episode: str
    step: int
    num_steps: int
    image_size: list[int]
    uv: list[float] | None
    trace: list[list[int]] | None
    instruction: str
    flags: list[str]
    source_episode_id: str = ""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_context(out_dir: str | Path, report: CheckReport, load_tokenizer: bool = True) -> CheckContext:
    """Read run.json and the statistics into a CheckContext; what is missing becomes a failure or a note."""
    out_dir = Path(out_dir)
    run = rd.read_run(out_dir)
    if not run:
        report.notes.append("run.json is absent: templates, phrase and tokenizer taken from the samples")
    names = rd.nested(run, "config.templates.names")
    phrase = rd.nested(run, "config.templates.information_phrase")
    vocab = rd.nested(run, "models.action_tokenizer.vocab_size")
    symbols_of = None
    tok_path = rd.nested(run, "models.action_tokenizer.name_or_path")
    if load_tokenizer and tok_path:
        from armdata.annotators.actions.tokenizer import ActionTokenizer
        from armdata.schemas.errors import ArmdataError

        try:
            tok = ActionTokenizer.from_pretrained(str(tok_path), check=False)
        except (ArmdataError, OSError, ValueError) as e:
            report.notes.append(f"action tokenizer {tok_path!r} not loadable here ({e}); symbols not checked")
        else:
            symbols_of = tok.ids_to_symbols
            if vocab is not None and int(vocab) != tok.vocab_size:
                report.failures.append(
                    Failure(
                        None,
                        None,
                        "run.json",
                        "mismatch",
                        f"models.action_tokenizer.vocab_size {vocab} but the tokenizer has {tok.vocab_size}",
                    )
                )
            vocab = tok.vocab_size
    elif not tok_path:
        report.notes.append("run.json names no action tokenizer: symbols not checked")
    stats: dict[str, act.ActionStats] = {}
    try:
        raw_stats = rd.read_statistics(out_dir)
    except (OSError, json.JSONDecodeError) as e:
        report.failures.append(Failure(STATS_FILE, None, STATS_FILE, "unreadable", str(e)))
        raw_stats = {}
    for source, entry in raw_stats.items():
        try:
            stats[source] = act.ActionStats.from_json(entry)
        except (KeyError, ValueError, TypeError) as e:
            report.failures.append(Failure(STATS_FILE, None, f"{source}.action", "bad_statistics", f"{e}"))
    return CheckContext(
        vocab_size=int(vocab) if vocab is not None else None,
        template_names=tuple(names) if names else None,
        information_phrase=phrase if phrase in ("this", "these") else None,
        statistics=stats,
        symbols_of=symbols_of,
        preset=rd.nested(run, "config.preset") or "armdata",
    )


def _manifest_member_digests(path: Path) -> dict[str, dict[str, str]]:
    """The manifest's per-member sha256s ({} when absent, unreadable or written before they were recorded)."""
    try:
        return dict(ShardManifest.from_json(rd.manifest_path(path).read_text(encoding="utf-8")).members or {})
    except (OSError, ValueError, TypeError):
        return {}


def _check_member_digests(shard: str, key: str, members: dict[str, bytes], digests: dict) -> list[Failure]:
    """Each member's bytes against the manifest: a flipped byte is named by sample and member."""
    want = digests.get(key)
    if not digests or want is None:
        return []  # no digests recorded, or a key the manifest lacks (reported by the keys check)
    out: list[Failure] = []
    for ext in sorted(set(want) | set(members)):
        if ext not in members:
            out.append(Failure(shard, key, ext, "missing", "member listed in the manifest is absent"))
        elif ext not in want:
            out.append(Failure(shard, key, ext, "unexpected", "member not listed in the manifest"))
        else:
            got = hashlib.sha256(members[ext]).hexdigest()
            if got != want[ext]:
                out.append(Failure(shard, key, ext, "sha256_mismatch",
                                   f"member bytes changed: manifest {want[ext][:16]}..., shard {got[:16]}..."))
    return out


def _check_shard(
    path: Path, ctx: CheckContext, report: CheckReport, seen: list[_Seen], config_hash: str | None
) -> None:
    name = path.name
    fails = report.failures
    keys: list[str] = []
    episodes: set[str] = set()
    digests = _manifest_member_digests(path)
    try:
        for key, members in rd.iter_shard(path):
            keys.append(key)
            fails.extend(_check_member_digests(name, key, members, digests))
            ann, f = parse_annotation(members, name, key)
            fails.extend(f)
            if ann is None:
                continue
            fails.extend(check_sample(ann, members, shard=name, key=key, ctx=ctx))
            episodes.add(f"{ann.source}__{ann.episode}")
            seen.append(
                _Seen(
                    name,
                    key,
                    ann.source,
                    ann.episode,
                    ann.step,
                    ann.num_steps,
                    list(ann.image_size),
                    ann.gripper.uv,
                    ann.trace_uv255,
                    ann.instruction,
                    list(ann.flags),
                    ann.source_episode_id,
                )
            )
    except Exception as e:  # the reader raises tarfile/ValueError/OSError kinds on damaged tars
        fails.append(
            Failure(
                name,
                keys[-1] if keys else None,
                "tar",
                "unreadable",
                f"the shard cannot be read past {len(keys)} samples: {type(e).__name__}: {e}",
            )
        )
    report.samples += len(keys)
    mpath = rd.manifest_path(path)
    if not mpath.exists():
        fails.append(Failure(name, None, "manifest", "missing", f"{mpath.name} is absent"))
        return
    try:
        man = ShardManifest.from_json(mpath.read_text(encoding="utf-8"))
    except (ValueError, TypeError) as e:
        fails.append(Failure(name, None, "manifest", "unreadable", f"{mpath.name}: {e}"))
        return
    if man.shard != name:
        fails.append(Failure(name, None, "manifest.shard", "mismatch", f"manifest names {man.shard!r}"))
    size = path.stat().st_size
    if man.num_bytes != size:
        fails.append(
            Failure(name, None, "manifest.num_bytes", "mismatch", f"manifest {man.num_bytes}, file {size}")
        )
    digest = _sha256(path)
    if man.sha256 != digest:
        fails.append(
            Failure(
                name,
                None,
                "manifest.sha256",
                "mismatch",
                f"manifest {man.sha256[:16]}..., file {digest[:16]}...",
            )
        )
    if man.num_samples != len(keys):
        fails.append(
            Failure(
                name,
                None,
                "manifest.num_samples",
                "mismatch",
                f"manifest {man.num_samples}, shard holds {len(keys)}",
            )
        )
    if list(man.keys) != keys:
        extra = sorted(set(keys) - set(man.keys))
        lost = sorted(set(man.keys) - set(keys))
        where = extra[0] if extra else (lost[0] if lost else None)
        fails.append(
            Failure(
                name,
                where,
                "manifest.keys",
                "mismatch",
                f"{len(extra)} keys not in the manifest, {len(lost)} listed but absent"
                + ("" if extra or lost else ", order differs"),
            )
        )
    if set(man.episodes) != episodes:
        fails.append(
            Failure(
                name,
                None,
                "manifest.episodes",
                "mismatch",
                f"manifest lists {len(set(man.episodes))} episodes, shard holds {len(episodes)}",
            )
        )
    if config_hash and man.config_hash != config_hash:
        fails.append(
            Failure(
                name,
                None,
                "manifest.config_hash",
                "mismatch",
                f"manifest {man.config_hash}, run.json {config_hash}",
            )
        )


def _check_shard_names(paths: list[Path], out_dir: Path, report: CheckReport) -> None:
    parsed = {}
    for p in paths:
        m = rd.SHARD_RE.match(p.name)
        if not m:
            report.failures.append(
                Failure(p.name, None, "shard", "bad_name", "not armdata-IIIII-of-NNNNN.tar")
            )
        else:
            parsed[p.name] = (int(m.group(1)), int(m.group(2)))
    counts = {n for _, n in parsed.values()}
    if len(counts) > 1:
        report.failures.append(
            Failure(None, None, "shard", "bad_name", f"shards disagree on the count: {sorted(counts)}")
        )
    elif counts:
        n = counts.pop()
        # The job plans no empty shard, so an absent one lost its samples, unless every episode planned for it
        # failed (then the dead letters say so, and it is only noted).
        dead, _ = rd.read_dead_letters(out_dir)
        for i in range(n):
            if shard_name(i, n) not in parsed:
                if dead:
                    report.notes.append(
                        f"{shard_name(i, n)} is absent; {len(dead)} records failed (failures.jsonl),"
                        " which may have emptied it"
                    )
                else:
                    report.failures.append(
                        Failure(shard_name(i, n), None, "shard", "missing", "this shard is absent")
                    )
    for man in sorted((out_dir / SHARDS_DIR).glob("*.json")) if (out_dir / SHARDS_DIR).is_dir() else []:
        if not man.with_suffix(".tar").exists():
            report.failures.append(
                Failure(
                    man.with_suffix(".tar").name,
                    None,
                    "shard",
                    "missing",
                    f"manifest {man.name} without its tar",
                )
            )


def _check_episodes(seen: list[_Seen], report: CheckReport) -> None:
    by_key: dict[str, list[_Seen]] = defaultdict(list)
    for s in seen:
        by_key[s.key].append(s)
    for key, group in by_key.items():
        if len(group) > 1:
            where = ", ".join(g.shard for g in group)
            report.failures.append(
                Failure(group[1].shard, key, "key", "duplicate_key", f"key appears in {where}")
            )
    episodes: dict[tuple[str, str], dict[int, _Seen]] = defaultdict(dict)
    for s in seen:
        episodes[(s.source, s.episode)].setdefault(s.step, s)
    report.episodes = len(episodes)
    for (source, episode), steps in sorted(episodes.items()):
        first = next(iter(steps.values()))
        n = first.num_steps
        if any(s.num_steps != n for s in steps.values()):
            report.failures.append(
                Failure(
                    first.shard,
                    first.key,
                    "num_steps",
                    "mismatch",
                    "steps of one episode disagree on num_steps",
                )
            )
            continue
        lost = [t for t in range(n) if t not in steps]
        if lost:
            k = sample_key(source, episode, lost[0])
            report.failures.append(
                Failure(
                    None,
                    k,
                    "step",
                    "missing_step",
                    f"{len(lost)} of {n} steps of {source}__{episode} are absent",
                )
            )
            continue
        h, w = first.image_size
        ordered = [steps[t] for t in range(n)]
        pts = np.array(
            [s.uv if s.uv is not None and len(s.uv) == 2 else [np.nan, np.nan] for s in ordered], float
        )
        vis = np.array([s.uv is not None for s in ordered])
        for s, tr in zip(ordered, build_traces(pts, vis, h, w)):
            want = tr.tolist() if tr is not None else None
            if s.trace != want:  # a different trace, or a trace where none can be built (or the reverse)
                report.failures.append(
                    Failure(
                        s.shard,
                        s.key,
                        "trace_uv255",
                        "trace_mismatch",
                        f"trace {s.trace} but the episode's gripper points give {want}",
                    )
                )


def _check_index(out_dir: Path, seen: list[_Seen], report: CheckReport) -> None:
    try:
        rows = rd.read_index_rows(out_dir)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError on a damaged file
        report.failures.append(
            Failure(INDEX_FILE, None, INDEX_FILE, "unreadable", f"{type(e).__name__}: {e}")
        )
        return
    if rows is None:
        report.failures.append(Failure(INDEX_FILE, None, INDEX_FILE, "missing", "the index is absent"))
        return
    cols = set(rows[0]) if rows else set(INDEX_COLUMNS)
    lost = [c for c in INDEX_COLUMNS if c not in cols]
    if lost:
        report.failures.append(
            Failure(INDEX_FILE, None, INDEX_FILE, "missing_column", f"columns {lost} absent")
        )
        return
    by_key = {s.key: s for s in seen}
    counted = Counter(r["key"] for r in rows)
    for k, c in counted.items():
        if c > 1:
            report.failures.append(Failure(INDEX_FILE, k, "index.key", "duplicate_key", f"{c} index rows"))
    for k in sorted(set(by_key) - set(counted)):
        report.failures.append(Failure(by_key[k].shard, k, "index.key", "missing", "sample has no index row"))
    for r in rows:
        s = by_key.get(r["key"])
        if s is None:
            report.failures.append(
                Failure(r.get("shard"), r["key"], "index.key", "unknown_key", "no such sample")
            )
            continue
        want = {
            "shard": s.shard,
            "source": s.source,
            "episode": s.episode,
            "source_episode_id": s.source_episode_id,
            "step": s.step,
            "instruction": s.instruction,
            "flags": sorted(s.flags),
        }
        got = {**r, "shard": Path(str(r["shard"])).name, "flags": sorted(r["flags"] or [])}
        for col, v in want.items():
            if got[col] != v:
                report.failures.append(
                    Failure(
                        s.shard,
                        s.key,
                        f"index.{col}",
                        "mismatch",
                        f"index has {got[col]!r}, the sample {v!r}",
                    )
                )


def check_output(out_dir: str | Path, *, load_tokenizer: bool = True) -> CheckReport:
    """Run every check on a finished output folder; the report lists each failure with shard, key and field.

    load_tokenizer: load the action tokenizer named in run.json to check symbols (skipped with a note when it
    cannot be loaded here, e.g. a hub id without network).
    """
    out_dir = Path(out_dir)
    report = CheckReport(out_dir=str(out_dir))
    ctx = load_context(out_dir, report, load_tokenizer=load_tokenizer)
    paths = rd.shard_paths(out_dir)
    report.shards = len(paths)
    if not paths:
        report.failures.append(
            Failure(None, None, "shards", "missing", f"no shards under {out_dir / SHARDS_DIR}")
        )
    _check_shard_names(paths, out_dir, report)
    config_hash = rd.nested(rd.read_run(out_dir), "config_hash")
    seen: list[_Seen] = []
    for p in paths:
        _check_shard(p, ctx, report, seen, config_hash)
    _check_episodes(seen, report)
    _check_index(out_dir, seen, report)
    for source in sorted({s.source for s in seen} - set(ctx.statistics)):
        report.failures.append(
            Failure(STATS_FILE, None, f"{source}.action", "missing", "no statistics for this source")
        )
    records, bad = rd.read_dead_letters(out_dir)
    for n, why in bad:
        report.failures.append(Failure(FAILURES_FILE, None, f"line {n}", "unreadable", why))
    for n, r in enumerate(records, 1):
        missing = [k for k in ("source", "field", "kind", "message") if k not in r]
        if missing:
            report.failures.append(Failure(FAILURES_FILE, None, f"record {n}", "bad_record", f"no {missing}"))
    logger.info(
        "checked %s: %d shards, %d samples, %d failures",
        out_dir,
        report.shards,
        report.samples,
        len(report.failures),
    )
    return report


__all__ = [
    "CheckContext",
    "CheckReport",
    "Failure",
    "check_output",
    "check_sample",
    "expected_text",
    "load_context",
    "parse_annotation",
]
