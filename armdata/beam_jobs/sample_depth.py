"""``armdata sample-depth``: a seeded random sample of depth maps, as WebDataset shards, for tokenizer training.

    armdata sample-depth --source sample --out DIR [--fraction 0.1] [--max-maps N] [--seed 0]
                         [--backend auto|depth-anything|depth-camera] [--model base] [--input-size 518]
                         [--device cpu] [--max-batch-size 8] [--num-shards 4] [Beam options]

Which steps: each (source, episode, step) has a hashed coin ``u`` in [0, 1) (see
:func:`armdata.training.depth_tokenizer.sample_u`); steps with ``u < fraction`` are kept, and with ``--max-maps``
the ones with the smallest ``u``. Only the chosen frames go through the depth model. Output: ``DIR/depth-SSSSS-of-
NNNNN.tar`` (a shard with no map is not written), ``DIR/manifest.json`` (counts, settings, backend provenance) and
``DIR/failures.jsonl`` (episodes that could not be read).
"""

from __future__ import annotations

import argparse
import json
import logging
import os

import apache_beam as beam
import numpy as np

from armdata.beam_jobs.common import make_pipeline, read_standard_episodes, write_failures
from armdata.training.depth_tokenizer import (
    candidate_steps,
    depth_shard_bytes,
    sample_key,
    sample_u,
    shard_name,
    shard_of,
)
from armdata.schemas.errors import ArmdataError
from armdata.schemas.source import SourceConfig, resolve_source

logger = logging.getLogger(__name__)

ACCEPTS_BEAM_ARGS = True
MANIFEST = "manifest.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", action="append", required=True,
                        help="source file or known source name (e.g. sample); repeatable: one sub-folder per source")
    parser.add_argument("--out", required=True, help="output directory for the shards")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of steps kept (hashed, seeded coin)")
    parser.add_argument("--max-maps", type=int, default=None, help="keep at most this many (smallest coins)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto", choices=["auto", "depth-anything", "depth-camera"],
                        help="auto: the source's depth camera if it names one, else Depth Anything")
    parser.add_argument("--model", default=None, help="depth-anything: small | base | large | hub id | dir")
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (no silent fallback)")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--num-shards", type=int, default=4)
    parser.add_argument("--torch-threads", type=int, default=None)


def backend_for(source: SourceConfig, backend: str, model: str | None) -> str:
    if backend != "auto":
        return backend
    return "depth-camera" if source.cameras.depth and model is None else "depth-anything"


def backend_kwargs(source: SourceConfig, backend: str, args) -> dict:
    if backend == "depth-camera":
        if not source.cameras.depth:
            raise ArmdataError(f"source {source.name} names no depth camera (cameras.depth); use --backend "
                               "depth-anything")
        return {"camera": source.cameras.depth}  # StandardEpisode.depth_camera is already in metres
    kw = {"input_size": args.input_size, "device": args.device}
    if args.model:
        kw["model"] = args.model
    return kw


def chosen_frames(ep, source_name: str, backend: str, fraction: float, seed: int, chosen: set[str] | None = None):
    """((key, episode, step), frame) for the sampled steps of one episode; ``chosen`` (--max-maps) narrows them."""
    frames = ep.depth_camera if backend == "depth-camera" else ep.primary
    if frames is None:
        return
    for _, t in candidate_steps(source_name, ep.episode_key, ep.num_steps, fraction, seed):
        key = sample_key(source_name, ep.episode_key, t)
        if chosen is None or key in chosen:
            frame = np.asarray(frames[t])
            if backend == "depth-camera" and not (np.isfinite(frame) & (frame > 0)).any():
                # a depth frame without a single reading has no map; counted, not fatal
                beam.metrics.Metrics.counter("armdata", "depth/frames_without_readings").inc()
                continue
            yield (key, ep.episode_key, t), frame


def atomic_write(path: str, data: bytes) -> None:
    """Write through Beam's FileSystems (local, gs://, s3://): a temporary name, then a rename."""
    from apache_beam.io.filesystems import FileSystems

    tmp = f"{path}.tmp-{os.getpid()}"
    with FileSystems.create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


class WriteShard(beam.DoFn):
    """(shard index, [((key, episode, step), map)]) -> writes the shard; yields (shard name, count)."""

    def __init__(self, out_dir: str, num_shards: int, source: str, seed: int, backend: str):
        self.out_dir, self.num_shards, self.source, self.seed, self.backend = out_dir, num_shards, source, seed, backend
        self.written = beam.metrics.Metrics.counter("armdata", "depth/maps_written")

    def process(self, item):
        shard, kvs = item
        items = []
        for (key, episode, step), m in kvs:
            meta = {"source": self.source, "episode": episode, "step": int(step),
                    "u": sample_u(self.seed, self.source, episode, int(step)), "backend": self.backend}
            items.append((key, m, meta))
        name = shard_name(shard, self.num_shards)
        atomic_write(f"{self.out_dir.rstrip('/')}/{name}", depth_shard_bytes(items))
        self.written.inc(len(items))
        yield name, len(items)


def build(p: beam.Pipeline, source: SourceConfig, args) -> None:
    """Wire the job onto pipeline ``p`` (tests call this with a TestPipeline)."""
    from apache_beam.ml.inference.base import RunInference

    from armdata.pipeline.stages.depth_handler import keyed_depth_handler

    backend = backend_for(source, args.backend, args.model)
    kw = backend_kwargs(source, backend, args)
    name, frac, seed, n = source.name, args.fraction, args.seed, args.num_shards
    episodes, failures = read_standard_episodes(p, source, name)
    write_failures(failures, args.out)

    if args.max_maps:
        chosen = (
            episodes
            | "Coins" >> beam.FlatMap(lambda ep: [(u, sample_key(name, ep.episode_key, t))
                                                   for u, t in candidate_steps(name, ep.episode_key, ep.num_steps,
                                                                               frac, seed)])
            | "SmallestCoins" >> beam.combiners.Top.Smallest(args.max_maps)
            | "ChosenKeys" >> beam.Map(lambda top: {k for _, k in top})
        )
        frames = episodes | "ChosenFrames" >> beam.FlatMap(
            lambda ep, keys: chosen_frames(ep, name, backend, frac, seed, keys), beam.pvalue.AsSingleton(chosen))
    else:
        frames = episodes | "ChosenFrames" >> beam.FlatMap(lambda ep: chosen_frames(ep, name, backend, frac, seed))

    handler = keyed_depth_handler(backend, kw, max_batch_size=args.max_batch_size, torch_threads=args.torch_threads)
    written = (
        frames
        | "DepthMaps" >> RunInference(handler)
        | "ToShard" >> beam.Map(lambda kv: (shard_of(kv[0][0], n), kv))
        | "GroupShards" >> beam.GroupByKey()
        | "WriteShards" >> beam.ParDo(WriteShard(args.out, n, name, seed, backend))
    )
    from armdata.annotators.depth.estimator import make_depth_backend

    settings = {"source": name, "fraction": frac, "max_maps": args.max_maps, "seed": seed, "num_shards": n,
                "backend": backend, "backend_kwargs": kw, "provenance": make_depth_backend(backend, **kw).provenance()}
    (
        written
        | "Counts" >> beam.combiners.ToList()
        | "Manifest" >> beam.Map(lambda shards: atomic_write(
            f"{args.out.rstrip('/')}/{MANIFEST}",
            json.dumps({**settings, "shards": dict(sorted(shards)), "maps": sum(c for _, c in shards)},
                       indent=1, sort_keys=True, default=str).encode()))
    )


def run(args, beam_args: list[str]) -> int:
    if not 0.0 < args.fraction <= 1.0:
        raise ArmdataError(f"--fraction must lie in (0, 1], got {args.fraction}")
    if args.max_maps is not None and args.max_maps < 1:
        raise ArmdataError(f"--max-maps must be at least 1, got {args.max_maps}")
    if args.num_shards < 1:
        raise ArmdataError(f"--num-shards must be at least 1, got {args.num_shards}")
    sources = [resolve_source(s) for s in args.source]
    root = args.out
    for source in sources:
        # One source: shards straight in --out. Several: one sub-folder each (training reads them all).
        out = root if len(sources) == 1 else f"{root.rstrip('/')}/{source.name}"
        one = argparse.Namespace(**{**vars(args), "out": out})
        if "://" not in out:
            os.makedirs(out, exist_ok=True)
        p = make_pipeline(beam_args)
        build(p, source, one)
        p.run().wait_until_finish()
        with open(os.path.join(out, MANIFEST), encoding="utf-8") if "://" not in out else _remote(out) as f:
            manifest = json.load(f)
        print(f"wrote {manifest['maps']} depth maps of {source.name} in {len(manifest['shards'])} shard(s) to "
              f"{out} (backend {manifest['backend']})")
    return 0


def _remote(out_dir: str):
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(f"{out_dir.rstrip('/')}/{MANIFEST}")
