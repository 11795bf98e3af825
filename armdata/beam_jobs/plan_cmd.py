"""``armdata plan --source FILE ...``: episodes, steps, frames per camera, output size and model-hours per stage,
from the data's metadata and a few records (no Beam job, no model). See ``armdata.pipeline.plan``."""

from __future__ import annotations

import argparse

ACCEPTS_BEAM_ARGS = False


def configure(parser: argparse.ArgumentParser) -> None:
    from armdata.beam_jobs.annotate import add_config_flags

    add_config_flags(parser)
    for action in parser._actions:  # plan writes nothing: --out is not needed here
        if action.dest == "out":
            action.required = False
    parser.add_argument("--sample", type=int, default=32,
                        help="episodes read for steps and sizes (all of them when the split has no more)")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from armdata.beam_jobs.annotate import config_from_args
    from armdata.pipeline.plan import format_plan, make_plan
    from armdata.schemas.source import resolve_source

    sources = [resolve_source(s) for s in args.source]
    print(format_plan(make_plan(sources, config_from_args(args), sample=args.sample)))
    return 0
