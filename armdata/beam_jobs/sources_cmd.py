"""``armdata sources list | inspect PATH [--write-draft FILE] | validate FILE``.

list      the source files in sources/ (or $ARMDATA_SOURCES): name, data dir, split; broken files are shown
          with their error.
inspect   the feature tree of an RLDS builder dir (keys, shapes, dtypes, an example value, black or constant
          cameras); ``--write-draft FILE`` writes a draft source file with every guess marked.
validate  checks a source file against its data and prints a report; exit status 1 when a check fails.

No Beam job runs here, so unknown flags are rejected.
"""

from __future__ import annotations

import argparse
import sys

from armdata.schemas.errors import SourceFileError
from armdata.schemas.source import builtin_sources_dir, load_source

ACCEPTS_BEAM_ARGS = False


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sources_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("list", help="the source files in sources/ with name, data dir and split")
    p.add_argument("--dir", default=None, help="folder of source files (default: the repository's sources/)")
    p = sub.add_parser("inspect", help="print the feature tree of an RLDS builder dir or a LeRobot dataset folder; "
                                            "optionally draft a source file")
    p.add_argument("path", help="TFDS builder directory (local, gs://, s3://), e.g. .../bridge_dataset/1.0.0, or a "
                   "local LeRobot v2.1/v3.0 dataset folder (the one holding meta/info.json)")
    p.add_argument("--episodes", type=int, default=3, help="episodes to sample for examples and camera checks")
    p.add_argument("--split", default=None, help="split to sample (default: train, else the first)")
    p.add_argument("--write-draft", metavar="FILE", default=None, help="write a draft source file here")
    p.add_argument("--name", default=None, help="source name for the draft (default: the dataset's name)")
    p = sub.add_parser("validate", help="check a source file against its data; non-zero exit on failure")
    p.add_argument("file", help="source file (YAML) or the name of one in sources/")
    p.add_argument("--episodes", type=int, default=3, help="episodes to read through the reader and standardizer")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    return {"list": _list, "inspect": _inspect, "validate": _validate}[args.sources_command](args)


def _list(args: argparse.Namespace) -> int:
    from pathlib import Path

    folder = Path(args.dir) if args.dir else builtin_sources_dir()
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    if not files:
        print(f"no source files in {folder}")
        return 0
    rows = []
    for f in files:
        try:
            cfg = load_source(f)
            try:
                where = cfg.data_dir()
            except SourceFileError:
                where = f"{cfg.data.dir} (set the variable)"
            rows.append((cfg.name, where, cfg.data.split, f"{len(cfg.unconfirmed)} unconfirmed" if cfg.unconfirmed else ""))
        except SourceFileError as e:
            rows.append((f.stem, f"ERROR {e}", "", ""))
    w0 = max(len(r[0]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    print(f"{'name':<{w0}}  {'split':<{w2}}  data dir")
    for name, d, split, note in rows:
        print(f"{name:<{w0}}  {split:<{w2}}  {d}" + (f"  ({note})" if note else ""))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from armdata.pipeline.sources.inspect import draft_source, inspect_builder, write_draft

    insp = inspect_builder(args.path, episodes=args.episodes, split=args.split)
    print(insp.render())
    if args.write_draft:
        out = write_draft(draft_source(insp, name=args.name), args.write_draft)
        print(f"\ndraft source file written to {out}; check every '# guess:' line, then run "
              f"`armdata sources validate {out}`")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from armdata.pipeline.sources.inspect import validate_source

    path = args.file
    if not Path(path).exists() and not path.endswith((".yaml", ".yml")):
        cand = builtin_sources_dir() / f"{path}.yaml"
        if cand.exists():
            path = str(cand)
    report = validate_source(path, episodes=args.episodes)
    print(report.render())
    if not report.ok:
        print(f"armdata sources validate: {len(report.failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0
