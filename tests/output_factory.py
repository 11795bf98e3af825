"""A small but real annotate output folder, written through the same contracts as the annotate job.

Samples are ``SampleAnnotation.to_json`` + JPEG images + the drawn trace (``draw_trace``), written with
``webdataset.TarWriter``; beside each shard its ``ShardManifest``; ``index.parquet`` (pyarrow, INDEX_COLUMNS);
``dataset_statistics.json`` in the OpenVLA layout; ``failures.jsonl`` of ``RecordError.to_dict()``;
``run.json`` naming a tiny depth VQ-VAE checkpoint (the real architecture, random weights, saved by
``save_checkpoint``) and a small Qwen2-style tokenizer (``make_test_tokenizer``). Traces come from
``build_traces`` over per-step gripper points; the points are the ground truth plus seeded noise, so the
audit's trace error is known to be small but not zero. Everything is seeded: the same call writes the same
bytes.

Used by the checker and audit tests so they do not depend on the annotate job; a test that corrupts a member
calls :func:`rewrite_sample`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from armdata.annotators.actions import normalize as act
from armdata.annotators.depth.tokenizer import depth_text
from armdata.annotators.draw import draw_trace
from armdata.annotators.trace import build_traces, trace_text
from armdata.schemas.errors import RecordError
from armdata.schemas.sample import (
    FAILURES_FILE,
    FLAG_ACTION_CLIPPED,
    FLAG_DISAGREE,
    FLAG_NO_POINT,
    FLAG_NO_TRACE,
    INDEX_COLUMNS,
    INDEX_FILE,
    RUN_FILE,
    SHARDS_DIR,
    STATS_FILE,
    ActionAnnotation,
    GripperPoint,
    SampleAnnotation,
    ShardManifest,
    sample_key,
    shard_name,
)
from armdata.schemas.templates import TEMPLATE_VERSION, TemplateSettings, TextInputs, render_all

CONFIG_HASH = "factory0123456789"
TEMPLATE_NAMES = ["reasoning", "trajectory_conditioned", "depth_only", "trace_only"]


@dataclass
class FactoryOutput:
    out_dir: Path
    keys: list[str]  # every sample key, in shard order
    shard_of: dict[str, str]  # key -> shard file name
    episodes: list[str]  # "{source}__{episode}"
    run: dict = field(default_factory=dict)


def make_models(directory: str | os.PathLike) -> tuple[str, str]:
    """(depth checkpoint path, tokenizer dir): a tiny random AiT VQ-VAE and the small test tokenizer."""
    import torch

    from armdata.annotators.actions.tokenizer import make_test_tokenizer
    from armdata.annotators.depth.tokenizer import AiTVQVAE, VQVAEConfig, save_checkpoint

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    ckpt = d / "depth_vqvae_tiny.safetensors"
    save_checkpoint(AiTVQVAE(VQVAEConfig(hidden_dim=4, codebook_dim=8)), ckpt)
    tok = make_test_tokenizer(d / "tokenizer")
    return str(ckpt), tok


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _frame(rng: np.random.Generator, h: int, w: int, uv: np.ndarray, t: int) -> np.ndarray:
    """A textured frame with a dark 'gripper' blob at the ground-truth point."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), np.full_like(x, 80 + 5 * t)], -1)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    u, v = float(uv[0]), float(uv[1])
    d.ellipse([u - 4, v - 4, u + 4, v + 4], fill=(30, 30, 30))
    return np.asarray(img)


@dataclass
class _Episode:
    source: str
    episode: str
    steps: int
    views: list[str]
    gt_uv: np.ndarray
    est_uv: np.ndarray
    visible: np.ndarray
    actions: np.ndarray
    instruction: str


def _episodes(rng: np.random.Generator, h: int, w: int, steps: int, noise_px: float) -> list[_Episode]:
    plan = [("srcA", "ep000", []), ("srcA", "ep001", []), ("srcB", "ep000", ["wrist"])]
    out = []
    for i, (source, episode, views) in enumerate(plan):
        t = np.linspace(0.0, 1.0, steps)
        gt = np.stack([10 + t * (w - 20), h / 2 + (h / 4) * np.sin(2 * np.pi * t + i)], 1)
        est = gt + rng.normal(0.0, 1.0, gt.shape) * noise_px
        vis = np.ones(steps, dtype=bool)
        if i == 1:
            vis[[2, steps - 2, steps - 1]] = (
                False  # lost mid-episode and at the end: no point, last steps no trace
            )
        acts = rng.normal(0.0, 0.02, (steps, 7))
        acts[:, 6] = (t < 0.5).astype(float)  # gripper open, then closed
        out.append(
            _Episode(source, episode, steps, views, gt, est, vis, acts, f"put the block {i} in the bowl")
        )
    return out


def _statistics(eps: list[_Episode]) -> dict:
    stats = {}
    for source in sorted({e.source for e in eps}):
        a = np.concatenate([e.actions for e in eps if e.source == source])
        stats[source] = {
            "action": {
                "mean": a.mean(0).tolist(),
                "std": a.std(0).tolist(),
                "min": a.min(0).tolist(),
                "max": a.max(0).tolist(),
                "q01": np.quantile(a, 0.01, axis=0).tolist(),
                "q99": np.quantile(a, 0.99, axis=0).tolist(),
                "mask": [True] * 6 + [False],
            },
            "num_transitions": int(a.shape[0]),
            "num_trajectories": sum(e.source == source for e in eps),
        }
    return stats


def _samples(ep: _Episode, stats: dict, tok, h: int, w: int, rng: np.random.Generator):
    st = act.ActionStats.from_json(stats[ep.source])
    vocab = tok.vocab_size
    normed = act.normalize(ep.actions, st)
    bins = act.to_bins(normed)
    ids = act.bins_to_ids(bins, vocab)
    pts = np.where(ep.visible[:, None], ep.est_uv, np.nan)
    traces = build_traces(pts, ep.visible, h, w)
    a = ep.actions
    clipped = np.where(st.mask, (a < st.q01) | (a > st.q99), np.abs(a) > 1).any(1)
    settings = TemplateSettings("this", multi_view=bool(ep.views), wording="armdata")  # an armdata-preset output
    for t in range(ep.steps):
        key = sample_key(ep.source, ep.episode, t)
        flags = []
        if not ep.visible[t]:
            flags.append(FLAG_NO_POINT)
        if traces[t] is None:
            flags.append(FLAG_NO_TRACE)
        if clipped[t]:
            flags.append(FLAG_ACTION_CLIPPED)
        if t == 3:
            flags.append(FLAG_DISAGREE)
        codes = (rng.integers(0, 40, 100) + (t % 3) * 20).tolist()
        symbols = tok.ids_to_symbols(ids[t])
        inputs = TextInputs(
            instruction=ep.instruction,
            depth=depth_text(codes),
            trace=trace_text(traces[t]) if traces[t] is not None else None,
            action=act.render_action_text(symbols),
        )
        ann = SampleAnnotation(
            key=key,
            source=ep.source,
            episode=ep.episode,
            step=t,
            num_steps=ep.steps,
            instruction=ep.instruction,
            image_size=[h, w],
            views=list(ep.views),
            depth_codes=codes,
            trace_uv255=traces[t].astype(int).tolist() if traces[t] is not None else None,
            gripper=GripperPoint(
                uv=[float(x) for x in ep.est_uv[t]] if ep.visible[t] else None,
                method="factory",
                confidence=0.9 if ep.visible[t] else 0.0,
            ),
            action=ActionAnnotation(
                raw=[float(x) for x in a[t]],
                normalized=[float(x) for x in normed[t]],
                bins=[int(x) for x in bins[t]],
                ids=[int(x) for x in ids[t]],
                symbols=list(symbols),
                vocab_size=int(vocab),
            ),
            flags=sorted(flags),
            text=render_all(inputs, settings, TEMPLATE_NAMES),
            template_version=TEMPLATE_VERSION,
            provenance_id=CONFIG_HASH,
            ground_truth={"gripper_uv": [float(x) for x in ep.gt_uv[t]]},
        )
        rgb = _frame(rng, h, w, ep.gt_uv[t], t)
        members = {"jpg": _jpeg(rgb), "json": ann.to_json()}
        for v in ep.views:
            members[f"{v}.jpg"] = _jpeg(rgb[::-1].copy())
        members["traj.png"] = _png(draw_trace(rgb, traces[t]) if traces[t] is not None else rgb)
        yield key, members, ann


def _write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    import webdataset as wds

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        w = wds.TarWriter(f, mtime=0)
        for key, members in samples:
            w.write({"__key__": key, **members})
        w.close()
    os.replace(tmp, path)


def write_manifest(
    path: Path, samples: list[tuple[str, dict[str, bytes]]], config_hash: str = CONFIG_HASH
) -> None:
    """The ShardManifest of a tar as it is on disk now."""
    data = path.read_bytes()
    eps = sorted({"__".join(k.split("__")[:2]) for k, _ in samples})
    man = ShardManifest(
        shard=path.name,
        num_samples=len(samples),
        num_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        keys=[k for k, _ in samples],
        episodes=eps,
        config_hash=config_hash,
    )
    path.with_suffix(".json").write_text(man.to_json(), encoding="utf-8")


def _write_index(out: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: [r[c] for r in rows] for c in INDEX_COLUMNS})
    pq.write_table(table, out / INDEX_FILE)


def write_output(
    out_dir: str | os.PathLike,
    models_dir: str | os.PathLike,
    *,
    steps: int = 10,
    height: int = 48,
    width: int = 64,
    num_shards: int = 2,
    seed: int = 0,
    noise_px: float = 1.5,
    models: tuple[str, str] | None = None,
) -> FactoryOutput:
    """Write the output folder: 3 episodes (2 sources, one with an extra view), ``steps`` steps each.

    noise_px: std of the estimated gripper points around the ground truth (0: the estimate is the truth);
    models: (depth checkpoint, tokenizer dir) from :func:`make_models` to reuse, else made in ``models_dir``.
    """
    from armdata.annotators.actions.tokenizer import ActionTokenizer

    out = Path(out_dir)
    (out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    ckpt, tok_dir = models or make_models(models_dir)
    tok = ActionTokenizer.from_pretrained(tok_dir, check=False)
    rng = np.random.default_rng(seed)
    eps = _episodes(rng, height, width, steps, noise_px)
    stats = _statistics(eps)
    per_shard: list[list[tuple[str, dict[str, bytes]]]] = [[] for _ in range(num_shards)]
    rows: list[dict] = []
    shard_of: dict[str, str] = {}
    for i, ep in enumerate(eps):
        s = i % num_shards
        name = shard_name(s, num_shards)
        for key, members, ann in _samples(ep, stats, tok, height, width, rng):
            per_shard[s].append((key, members))
            shard_of[key] = name
            rows.append(
                {
                    "key": key,
                    "shard": name,
                    "source": ann.source,
                    "episode": ann.episode,
                    "source_episode_id": ann.source_episode_id,
                    "step": ann.step,
                    "instruction": ann.instruction,
                    "flags": list(ann.flags),
                }
            )
    keys: list[str] = []
    for s, samples in enumerate(per_shard):
        path = out / SHARDS_DIR / shard_name(s, num_shards)
        _write_tar(path, samples)
        write_manifest(path, samples)
        keys += [k for k, _ in samples]
    _write_index(out, rows)
    (out / STATS_FILE).write_text(json.dumps(stats, indent=1), encoding="utf-8")
    dead = [
        RecordError("srcA", "ep009", None, "steps", "empty_episode", "the episode has 0 steps"),
        RecordError("srcB", "ep004", 3, "action", "nan_action", "action has NaN in dims [2]"),
    ]
    (out / FAILURES_FILE).write_text("".join(json.dumps(e.to_dict()) + "\n" for e in dead), encoding="utf-8")
    run = {
        "command": ["armdata", "annotate", "(test factory)"],
        "config_hash": CONFIG_HASH,
        "config": {
            "preset": "armdata",
            "templates": {"names": TEMPLATE_NAMES, "information_phrase": "this", "store_drawn_image": True},
        },
        "models": {
            "depth_tokenizer": {"path": ckpt},
            "action_tokenizer": {"name_or_path": tok_dir, "vocab_size": tok.vocab_size},
        },
    }
    (out / RUN_FILE).write_text(json.dumps(run, indent=1), encoding="utf-8")
    return FactoryOutput(out, keys, shard_of, [f"{e.source}__{e.episode}" for e in eps], run)


def read_samples(tar: Path) -> list[tuple[str, dict[str, bytes]]]:
    """All samples of a tar, in order (with the real reader)."""
    from armdata.pipeline.output.reader import iter_shard

    return list(iter_shard(tar))


def rewrite_sample(
    out: FactoryOutput, key: str, member: str, data: bytes | None, *, update_manifest: bool = True
) -> Path:
    """Replace (or with None, drop) one member of one sample and rewrite its shard; returns the shard path.

    update_manifest=True keeps the manifest in step with the new bytes, so only the member's own check fails.
    """
    path = out.out_dir / SHARDS_DIR / out.shard_of[key]
    samples = read_samples(path)
    for k, members in samples:
        if k == key:
            if data is None:
                members.pop(member)
            else:
                members[member] = data
    _write_tar(path, samples)
    if update_manifest:
        write_manifest(path, samples)
    return path


def edit_annotation(out: FactoryOutput, key: str, edit) -> Path:
    """Load the sample's json, apply ``edit(dict)`` in place, write it back (manifest updated)."""
    path = out.out_dir / SHARDS_DIR / out.shard_of[key]
    members = dict(read_samples(path))[key]
    d = json.loads(members["json"])
    edit(d)
    return rewrite_sample(out, key, "json", json.dumps(d, sort_keys=True).encode())
