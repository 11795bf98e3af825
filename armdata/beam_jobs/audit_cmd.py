"""``armdata audit OUT_DIR [--episode KEY] [--samples N --seed S]`` and ``armdata check OUT_DIR``.

Both read a finished output from disk. ``audit`` writes the HTML report (or one episode's page) and prints its
path; ``check`` prints every failure (shard, key, field) and exits non-zero when there is one. Neither runs a
Beam job, so neither accepts pipeline options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from armdata.schemas.errors import ArmdataError

ACCEPTS_BEAM_ARGS = False


def _out_dir(path: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise ArmdataError(f"{p}: no such output folder")
    return p


def configure_audit(parser: argparse.ArgumentParser) -> None:
    from armdata.pipeline.audit.report import DEFAULT_SAMPLES

    parser.add_argument(
        "out_dir", metavar="OUT_DIR", help="a finished output folder (shards/, index.parquet, ...)"
    )
    parser.add_argument("--episode", metavar="KEY", help="write one episode's page instead (SOURCE__EPISODE)")
    parser.add_argument(
        "--samples", type=int, default=DEFAULT_SAMPLES, help="steps shown as cards (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the card sample (default %(default)s)")


def run_audit(args: argparse.Namespace, beam_args: list[str]) -> int:
    from armdata.pipeline.audit import report as audit

    out = _out_dir(args.out_dir)
    if args.episode:
        path = audit.write_episode_report(out, args.episode)
    else:
        if args.samples < 0:
            raise ArmdataError("--samples must be >= 0")
        path = audit.run_audit(out, samples=args.samples, seed=args.seed)
    print(path)
    return 0


def configure_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="a finished output folder")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--no-tokenizer",
        action="store_true",
        help="do not load the action tokenizer (symbols are then not checked)",
    )


def run_check(args: argparse.Namespace, beam_args: list[str]) -> int:
    from armdata.pipeline.output.check import check_output

    report = check_output(_out_dir(args.out_dir), load_tokenizer=not args.no_tokenizer)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        for f in report.failures:
            print(f)
        for n in report.notes:
            print(f"note: {n}", file=sys.stderr)
        status = "ok" if report.ok else f"FAILED: {len(report.failures)} failure(s) {report.by_kind()}"
        print(
            f"checked {report.shards} shards, {report.samples} samples, {report.episodes} episodes: {status}"
        )
    return 0 if report.ok else 1
