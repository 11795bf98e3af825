"""``armdata export FORMAT OUT_DIR --to DIR [--layout L] [--overwrite]``: a finished output into another layout.

FORMAT is an exporter's name (``armdata.pipeline.output.export.EXPORTERS``); the layout defaults to the
exporter's first. Reads the shards from disk and runs no model, so it accepts no pipeline options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from armdata.schemas.errors import ArmdataError

ACCEPTS_BEAM_ARGS = False


def configure(parser: argparse.ArgumentParser) -> None:
    from armdata.pipeline.output.export import EXPORTERS

    parser.add_argument("format", metavar="FORMAT", choices=EXPORTERS.names(),
                        help=f"what to write: {', '.join(EXPORTERS.names())}")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="a finished output folder (shards/, index.parquet, ...)")
    parser.add_argument("--to", required=True, metavar="DIR", help="the folder to write (made atomically)")
    parser.add_argument("--layout", help="the exporter's layout (default: its first)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from armdata.pipeline.output.export import EXPORTERS

    out = Path(args.out_dir)
    if not out.is_dir():
        raise ArmdataError(f"{out}: no such output folder")
    exporter = EXPORTERS.create(args.format)
    layout = args.layout or exporter.layouts[0]
    if layout not in exporter.layouts:
        raise ArmdataError(f"{args.format} has no layout {layout!r}; known: {', '.join(exporter.layouts)}")
    to = Path(args.to)
    if to.exists() and not args.overwrite:
        raise ArmdataError(f"{to} exists; pass --overwrite to replace it")
    result = exporter.export(out, to, layout)
    print(f"{result.path}: {args.format} {result.layout}, {result.rows} rows from {result.episodes} episodes")
    return 0
