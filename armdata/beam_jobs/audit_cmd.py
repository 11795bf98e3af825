"""``armdata audit OUT_DIR [--episode KEY] [--samples N --seed S]`` and ``armdata check OUT_DIR``.

Both read a finished output, local or on ``gs://``/``s3://``. ``audit`` writes the HTML report (or one episode's
page) and prints its path; ``check`` prints every failure (shard, key, field) and exits non-zero when there is one.
A remote output is read from a local copy (``armdata.pipeline.output.remote``): ``check`` makes it in a temporary
folder and removes it, ``audit`` keeps it in ``--local-copy`` (default ``./armdata-audit/NAME``) and writes the
report there. Neither runs a Beam job, so neither accepts pipeline options: S3 credentials, region and a custom
endpoint come from boto3's environment variables (``AWS_ENDPOINT_URL`` for a non-AWS endpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from armdata.pipeline import fs
from armdata.schemas.errors import ArmdataError

ACCEPTS_BEAM_ARGS = False


def _local_copy(out_dir: str, local_dir: str) -> Path:
    from armdata.pipeline.output.remote import mirror_output

    try:
        return Path(mirror_output(out_dir, local_dir))
    except (OSError, ValueError) as e:  # FileSystems raises BeamIOError (an OSError) for a missing bucket/folder
        raise ArmdataError(f"{out_dir}: cannot read the output folder: {type(e).__name__}: {e}") from None


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
    parser.add_argument("--local-copy", metavar="DIR",
                        help="for a gs:// or s3:// output: the local folder it is copied to and the report written "
                             "in (default ./armdata-audit/NAME)")


def run_audit(args: argparse.Namespace, beam_args: list[str]) -> int:
    from armdata.pipeline.audit import report as audit

    if fs.is_remote(args.out_dir):
        local = args.local_copy or os.path.join("armdata-audit", fs.basename(args.out_dir))
        out = _local_copy(args.out_dir, local)
    else:
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

    if fs.is_remote(args.out_dir):
        with tempfile.TemporaryDirectory(prefix="armdata-check-") as tmp:
            report = check_output(_local_copy(args.out_dir, tmp), load_tokenizer=not args.no_tokenizer)
        report.out_dir = args.out_dir
    else:
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
