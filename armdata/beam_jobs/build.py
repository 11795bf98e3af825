"""``armdata build`` (stats, annotate, index, card, audit in one command) and ``armdata demo`` (the same on the
built-in synthetic sample, offline: depth from its depth camera, the small depth tokenizer shipped in the
package, and a local Qwen2-style byte-level tokenizer unless ``--tokenizer`` names a real one)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from armdata.beam_jobs.annotate import add_config_flags, annotate_sources, check_trace_setup, config_from_args
from armdata.pipeline import fs
from armdata.pipeline.output.card import write_card, write_run_record
from armdata.schemas.sample import AUDIT_DIR, INDEX_FILE, SHARDS_DIR, STATS_FILE
from armdata.schemas.source import builtin_sources_dir, resolve_source

logger = logging.getLogger(__name__)

ACCEPTS_BEAM_ARGS = True
DEMO_OUT = "./armdata-demo"


def build(sources, out_dir: str, cfg, beam_args: list[str], argv: list[str] | None = None, audit: bool = True) -> dict:
    """Statistics (cached), the annotate job, run.json, the card, the audit. Returns the paths it wrote."""
    from armdata.beam_jobs.annotate import check_unique_sources
    from armdata.pipeline.output.lock import OutputLock

    check_unique_sources(sources)
    check_trace_setup(cfg, sources)
    out_dir = fs.absolute(out_dir)
    fs.makedirs(out_dir)
    with OutputLock(out_dir):  # held across every step: a second run into this folder is refused
        return _build_locked(sources, out_dir, cfg, beam_args, argv, audit)


def _build_locked(sources, out_dir: str, cfg, beam_args: list[str], argv, audit: bool) -> dict:
    from armdata.beam_jobs.stats import statistics_for

    if cfg.actions.statistics:
        statistics = json.loads(fs.read_bytes(cfg.actions.statistics))
    else:
        # The annotate job writes failures.jsonl (it reads the same episodes, and more can fail there).
        # One failure budget for every step of the build (--max-failure-fraction).
        statistics = statistics_for(sources, out_dir, beam_args, failures_file="stats_failures.jsonl",
                                    max_failure_fraction=cfg.max_failure_fraction)
    stats_path = fs.join(out_dir, STATS_FILE)
    if not fs.exists(stats_path):
        fs.write_bytes(stats_path, json.dumps(statistics, indent=2).encode())
    res = annotate_sources(sources, out_dir, cfg, statistics, beam_args)
    counts = {k: v for k, v in dataclasses.asdict(res).items() if k.startswith("episodes") or k == "samples"}
    counts["shards"] = res.num_shards
    record = write_run_record(out_dir, sources=sources, config=cfg.model_dump(mode="json"),
                              config_hash=res.config_hash, counts=counts, models=res.provenance, argv=argv)
    paths = {
        "shards": fs.join(res.out_dir, SHARDS_DIR),
        "index": fs.join(res.out_dir, INDEX_FILE),
        "statistics": stats_path,
        "card": write_card(out_dir, record),
    }
    if audit and not fs.is_remote(out_dir):
        from armdata.pipeline.audit.report import run_audit

        paths["report"] = str(run_audit(out_dir))
    else:
        if audit:
            logger.info("the audit reads a local folder: copy %s down and run `armdata audit` on it", out_dir)
        paths["report"] = fs.join(out_dir, AUDIT_DIR, "index.html") + " (not written)"
    return paths


def _print_paths(paths: dict) -> None:
    for k in ("shards", "index", "statistics", "card", "report"):
        print(f"{k:>10}: {paths[k]}")


def configure_build(parser) -> None:
    add_config_flags(parser)
    parser.add_argument("--no-audit", action="store_true", help="skip the audit report")


def run_build(args, beam_args) -> int:
    sources = [resolve_source(s) for s in args.source]
    paths = build(sources, args.out, config_from_args(args), beam_args, audit=not args.no_audit)
    _print_paths(paths)
    return 0


def configure_demo(parser) -> None:
    parser.add_argument("--out", default=DEMO_OUT, help=f"output folder (default {DEMO_OUT})")
    parser.add_argument("--tokenizer", help="action tokenizer hub id or local dir (default: a local Qwen2-style one)")
    parser.add_argument("--depth-model", help="Depth Anything weights (default: the sample's depth camera)")
    parser.add_argument("--no-audit", action="store_true", help="skip the audit report")


def demo_tokenizer_dir() -> str:
    """A deterministic local byte-level BPE tokenizer (Qwen2-like), made once in the cache."""
    from armdata.annotators.actions.tokenizer import make_test_tokenizer

    from armdata.cache import cache_root

    d = str(cache_root() / "demo-tokenizer")
    if not os.path.exists(os.path.join(d, "tokenizer_config.json")):
        make_test_tokenizer(d)
    return d


def run_demo(args, beam_args) -> int:
    from armdata.pipeline.stages.config import load_config

    source = resolve_source(str(builtin_sources_dir() / "sample.yaml"))
    cfg = load_config(None, None, **{
        "actions.tokenizer": args.tokenizer or demo_tokenizer_dir(),
        "depth.model": args.depth_model,
        "output.episodes_per_shard": 2,
    })
    paths = build([source], args.out, cfg, beam_args, audit=not args.no_audit)
    _print_paths(paths)
    return 0
