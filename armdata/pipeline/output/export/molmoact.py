"""MolmoAct's own training layouts, from finished shards (no model runs).

``finetune``: what MolmoAct's fine-tuning loader reads (``olmo/data/custom_lerobot_dataset.py``,
``CustomLeRobotDataset``: ``datasets.load_from_disk(path)``), one row per step, saved with ``save_to_disk``:

    language_instruction  str   the instruction
    depth                 str   ``<DEPTH_START><DEPTH_k>x100<DEPTH_END>``
    trace                 str   ``str(list)`` of the trace, ``[[u, v], ...]`` (the loader ``ast.literal_eval``s it)
    processed_action      str   ``json.dumps({"normalized_action", "tokenized_action", "chunked_action"})`` as
                                MolmoAct's ``action_reasoning_data.py`` writes it; ``chunked_action`` is the next 8
                                steps' symbols padded with the last step, ``[[s1, ..., s7], ...]``
    image, wrist_image    Image the primary camera and the source's wrist camera (None where it has none)
    key, source_episode_id str  armdata's sample key and the source episode's id (carried along; the loader
                                ignores them)

``mixture``: what MolmoAct's mixture loader reads (``olmo/data/robot_datasets.py``, ``RobotHfDataset``): one row per
(step, template) with ``conversations`` (``{"from": ["human", "gpt"], "value": [prompt, answer]}``; the loader takes
``value[0]`` and ``value[1]``), ``annotation`` (the trace string for ``trajectory_conditioned``, else None, as the
loader ``ast.literal_eval``s it before drawing), ``image`` (primary) and one image column per extra view, plus
``template``, ``key``, ``source_episode_id``; parquet files under ``data/`` with the Hugging Face features in their
metadata, so ``datasets.load_dataset("parquet", ...)`` gives the same types back.

A step without a trace or depth codes is left out of both layouts (MolmoAct's preprocessing would write ``"[]"`` or
``""`` there); the count is logged.
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from armdata.annotators.actions.normalize import DEFAULT_CHUNK, render_action_chunk_text, render_action_text
from armdata.annotators.depth.tokenizer import depth_text
from armdata.pipeline.output import reader as rd
from armdata.pipeline.output.export.base import ExportResult, iter_samples, register, staged_folder
from armdata.schemas.errors import ArmdataError
from armdata.schemas.sample import SampleAnnotation

logger = logging.getLogger(__name__)

FINETUNE_COLUMNS = ("language_instruction", "depth", "trace", "processed_action", "image", "wrist_image", "key",
                    "source_episode_id")
MIXTURE_TEMPLATES = ("reasoning", "trajectory_conditioned", "depth_only", "trace_only")
WRIST_VIEW = "wrist"  # the name standardize gives a source's cameras.wrist


def _episodes(out_dir: Path) -> Iterator[list[tuple[str, dict[str, bytes], SampleAnnotation]]]:
    """Samples grouped by episode (an episode's steps are contiguous in a shard, in step order)."""
    for _, group in itertools.groupby(iter_samples(out_dir), key=lambda s: (s[2].source, s[2].episode)):
        yield sorted(group, key=lambda s: s[2].step)


def _symbols_of(out_dir: Path):
    """ids -> symbols with the action tokenizer named in run.json (loading a vocabulary, not a model)."""
    run = rd.read_run(out_dir)
    path = rd.nested(run, "models.action_tokenizer.name_or_path")
    if not path:
        return None
    from armdata.annotators.actions.tokenizer import ActionTokenizer

    try:
        return ActionTokenizer.from_pretrained(str(path), check=False).ids_to_symbols
    except (ArmdataError, OSError, ValueError) as e:
        logger.warning("action tokenizer %r not loadable (%s): symbols come from the samples themselves", path, e)
        return None


def _chunks(episode: list[tuple[str, dict[str, bytes], SampleAnnotation]], symbols_of, n: int) -> list[str]:
    """Each step's ``chunked_action``: this and the next n-1 steps' symbols, padded with the last step's
    (MolmoAct's ``chunk_actions``); where a sample stores ``chunk_ids`` they are used and must agree."""
    per_step = [list(a.action.symbols) for _, _, a in episode]
    known = {i: s for _, _, a in episode for i, s in zip(a.action.ids, a.action.symbols)}
    out = []
    for t, (key, _, a) in enumerate(episode):
        if a.action.chunk_ids:
            to_symbols = symbols_of or (lambda ids: [known[i] for i in ids])
            try:
                rows = [to_symbols(r) for r in a.action.chunk_ids]
            except KeyError as e:
                raise ArmdataError(f"{key}: chunk id {e} has no symbol (the action tokenizer is not loadable)") from None
        else:
            window = per_step[t : t + n]
            rows = window + [window[-1]] * (n - len(window))
        out.append(render_action_chunk_text(rows))
    return out


def _finetune_rows(out_dir: Path, counts: dict) -> Iterator[dict]:
    symbols_of = _symbols_of(out_dir)
    for episode in _episodes(out_dir):
        counts["episodes"] += 1
        for (key, members, a), chunk in zip(episode, _chunks(episode, symbols_of, DEFAULT_CHUNK)):
            if a.trace_uv255 is None or a.depth_codes is None:
                counts["skipped"] += 1
                continue
            processed = {"normalized_action": list(a.action.normalized),
                         "tokenized_action": render_action_text(a.action.symbols), "chunked_action": chunk}
            wrist = members.get(f"{WRIST_VIEW}.jpg")
            yield {
                "language_instruction": a.instruction,
                "depth": depth_text(a.depth_codes),
                "trace": str([list(map(int, p)) for p in a.trace_uv255]),
                "processed_action": json.dumps(processed),
                "image": {"bytes": members["jpg"], "path": None},
                "wrist_image": {"bytes": wrist, "path": None} if wrist else None,
                "key": key,
                "source_episode_id": a.source_episode_id,
            }


def _finetune_features():
    import datasets as hfd

    s = hfd.Value("string")
    return hfd.Features({"language_instruction": s, "depth": s, "trace": s, "processed_action": s,
                         "image": hfd.Image(), "wrist_image": hfd.Image(), "key": s, "source_episode_id": s})


def _mixture_rows(shard: Path, views: list[str], counts: dict) -> list[dict]:
    rows = []
    for key, members in rd.iter_shard(shard):
        a = SampleAnnotation.from_json(members["json"])
        if a.trace_uv255 is None or a.depth_codes is None:
            counts["skipped"] += 1
            continue
        counts["episode_ids"].add((a.source, a.episode))
        images = {v: ({"bytes": members[f"{v}.jpg"], "path": None} if f"{v}.jpg" in members else None)
                  for v in views}
        for name in MIXTURE_TEMPLATES:
            if name not in a.text:
                continue
            t = a.text[name]
            rows.append({
                "conversations": {"from": ["human", "gpt"], "value": [t["prompt"], t["answer"]]},
                "annotation": str(a.trace_uv255) if name == "trajectory_conditioned" else None,
                "image": {"bytes": members["jpg"], "path": None},
                **images,
                "template": name,
                "key": key,
                "source_episode_id": a.source_episode_id,
            })
    return rows


def _mixture_features(views: list[str]):
    import datasets as hfd

    s = hfd.Value("string")
    feats = {"conversations": hfd.Sequence({"from": s, "value": s}), "annotation": s, "image": hfd.Image()}
    feats.update({v: hfd.Image() for v in views})
    feats.update({"template": s, "key": s, "source_episode_id": s})
    return hfd.Features(feats)


def _views(out_dir: Path) -> list[str]:
    """Every extra view any sample stores (a first pass over the shards: every row needs every column)."""
    views: set[str] = set()
    for shard in rd.shard_paths(out_dir):
        for _, members in rd.iter_shard(shard):
            views |= {m[: -len(".jpg")] for m in members if m.endswith(".jpg") and m != "jpg"}
    bad = sorted(v for v in views if v in ("image", "conversations", "annotation", "template", "key"))
    if bad:
        raise ArmdataError(f"extra view names {bad} collide with the mixture's columns")
    return sorted(views)


@register("molmoact")
class MolmoActExporter:
    """``finetune`` (CustomLeRobotDataset, save_to_disk) or ``mixture`` (RobotHfDataset, parquet)."""

    layouts = ("finetune", "mixture")

    def export(self, out_dir: Path, to: Path, layout: str) -> ExportResult:
        import datasets as hfd

        out_dir, to = Path(out_dir), Path(to)
        if layout not in self.layouts:
            raise ArmdataError(f"molmoact has no layout {layout!r}; known: {', '.join(self.layouts)}")
        counts: dict = {"episodes": 0, "skipped": 0, "episode_ids": set()}
        with staged_folder(to, overwrite=True) as tmp, tempfile.TemporaryDirectory() as cache:
            if layout == "finetune":
                # Streamed into Arrow files (one episode's samples in memory at a time), then saved whole.
                ds = hfd.Dataset.from_generator(_finetune_rows, features=_finetune_features(), cache_dir=cache,
                                                gen_kwargs={"out_dir": out_dir, "counts": counts})
                ds.save_to_disk(str(tmp))
                n, episodes = len(ds), counts["episodes"]
            else:
                views = _views(out_dir)
                (tmp / "data").mkdir()
                shards = rd.shard_paths(out_dir)
                n = 0
                for i, shard in enumerate(shards):
                    ds = hfd.Dataset.from_list(_mixture_rows(shard, views, counts), features=_mixture_features(views))
                    ds.to_parquet(str(tmp / "data" / f"train-{i:05d}-of-{len(shards):05d}.parquet"))
                    n += len(ds)
                episodes = len(counts["episode_ids"])
            files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        if counts["skipped"]:
            logger.warning("%d steps without a trace or depth codes left out of the %s export", counts["skipped"],
                           layout)
        return ExportResult(str(to), layout, n, episodes, files)
