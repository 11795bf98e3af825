"""The ``armdata`` command. Subcommands live in their own modules and are imported only when used.

Every module named in COMMANDS provides ``configure(parser)`` and ``run(args, beam_args) -> int``.
Flags a subcommand does not know are handed to it as ``beam_args`` (Beam pipeline options such as
``--runner=DataflowRunner --project ...``) when Beam knows them; any other is an error naming the closest armdata
flag. Commands that run no Beam job reject them.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import sys
import traceback

# TensorFlow's C++ start-up banner is noise for users of a data tool; -v brings it back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from armdata.schemas.errors import ArmdataError

# name -> (module, one-line help). One registry; a duplicate name is impossible in a dict literal.
COMMANDS: dict[str, tuple[str, str]] = {
    "sources": ("armdata.beam_jobs.sources_cmd", "list, inspect and validate robot source files"),
    "sample": ("armdata.beam_jobs.sample_cmd", "make the built-in synthetic RLDS sample"),
    "stats": ("armdata.beam_jobs.stats", "action statistics job -> dataset_statistics.json"),
    "decode-action": ("armdata.beam_jobs.actions_cmd", "decode an answer's action tokens to continuous actions"),
    "sample-depth": ("armdata.beam_jobs.sample_depth", "write a seeded random sample of depth maps as shards"),
    "train-depth-tokenizer": ("armdata.beam_jobs.train_depth", "train the depth VQ-VAE on sampled depth maps"),
    "locate": ("armdata.beam_jobs.locate_cmd", "point at the gripper on a seeded sample of frames -> a points table"),
    "annotate": ("armdata.beam_jobs.annotate", "episodes -> reasoning samples in sharded WebDataset"),
    "build": ("armdata.beam_jobs.build", "stats, annotate, index, card and audit in one command"),
    "demo": ("armdata.beam_jobs.build", "the whole chain on the built-in sample, no download"),
    "plan": ("armdata.beam_jobs.plan_cmd", "counts, output size and model-hours of a build, before running it"),
    "audit": ("armdata.beam_jobs.audit_cmd", "HTML report and audit.json for a finished output"),
    "check": ("armdata.beam_jobs.audit_cmd", "check a finished output; non-zero exit on failure"),
    "export": ("armdata.beam_jobs.export_cmd", "write a finished output in another layout (MolmoAct, LeRobot)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="armdata", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        mod = importlib.import_module(module)
        configure = getattr(mod, f"configure_{name.replace('-', '_')}", None) or mod.configure
        configure(p)
        _add_preset_flag(p, mod)
    return parser


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """Build only the parser of the command asked for, so `armdata sources list` does not import torch."""
    names = [a for a in argv if not a.startswith("-")]
    if names and names[0] in COMMANDS:
        parser = argparse.ArgumentParser(prog="armdata")
        parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        module, help_text = COMMANDS[names[0]]
        p = sub.add_parser(names[0], help=help_text, description=help_text)
        p.set_defaults(_module=module)
        mod = importlib.import_module(module)
        configure = getattr(mod, f"configure_{names[0].replace('-', '_')}", None) or mod.configure
        configure(p)
        _add_preset_flag(p, mod)
        return parser
    return build_parser()


def _add_preset_flag(p: argparse.ArgumentParser, mod) -> None:
    """Every command that runs a Beam job takes ``--preset`` (armdata/beam_jobs/presets.py)."""
    if getattr(mod, "ACCEPTS_BEAM_ARGS", False):
        from armdata.beam_jobs.presets import PRESETS

        p.add_argument("--preset", choices=list(PRESETS), help="runner preset: sets the Beam options (and settings) "
                       "a runner needs; any of them can still be given as a flag, which wins")


def _own_flags(parser: argparse.ArgumentParser, command: str) -> list[str]:
    """The long flags the command's own parser defines (for naming the closest one to a typo)."""
    flags: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            flags = [o for a in action.choices[command]._actions for o in a.option_strings if o.startswith("--")]
    return flags


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser_for(argv)
    args, beam_args = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    if not args.verbose:
        # Beam, absl and TF log every bundle and file at INFO; armdata's own INFO lines stay.
        for noisy in ("apache_beam", "absl", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # Beam logs a failing bundle's traceback before re-raising it; armdata prints the error once (-v: all).
        logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    mod = importlib.import_module(args._module)
    run = getattr(mod, f"run_{args.command.replace('-', '_')}", None) or mod.run
    accepts_beam = getattr(mod, "ACCEPTS_BEAM_ARGS", False)
    if beam_args and not accepts_beam:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    try:
        if accepts_beam:
            from armdata.beam_jobs.presets import apply_preset
            from armdata.pipeline import fs

            beam_args = apply_preset(getattr(args, "preset", None), beam_args)
            fs.configure(beam_args)  # the driver reads sources and writes outputs with the job's storage options
        if beam_args:
            from armdata.beam_jobs.common import check_beam_args

            check_beam_args(beam_args, _own_flags(parser, args.command))
        return int(run(args, beam_args) or 0)
    except ArmdataError as e:
        return _fail(args, e, str(e))
    except Exception as e:  # a full or read-only disk is the user's to fix: one line, not a traceback
        text = user_os_error(e)
        if text is None:
            raise
        return _fail(args, e, text)


# errno values that mean "the place you asked me to write cannot take it"
_USER_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only",
                errno.EACCES: "permission denied", errno.EDQUOT: "disk quota exceeded"}


def user_os_error(e: BaseException) -> str | None:
    """A one-line message for a full, read-only or forbidden output, also when a Beam runner re-raised it inside
    its own exception (then only its text is left); None for anything else."""
    for cur in _chain(e):
        if isinstance(cur, OSError) and cur.errno in _USER_ERRNOS:
            where = f": {cur.filename}" if cur.filename else ""
            return f"cannot write{where}: {_USER_ERRNOS[cur.errno]} ({os.strerror(cur.errno)})"
    text = str(e)
    for code, what in _USER_ERRNOS.items():
        if os.strerror(code) in text:
            path = re.search(r"'(/[^']+)'", text)
            return f"cannot write{': ' + path.group(1) if path else ''}: {what} ({os.strerror(code)})"
    return None


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _fail(args, e: BaseException, text: str) -> int:
    if args.verbose:
        traceback.print_exception(e)
    text = " ".join(line.strip() for line in str(text).splitlines() if line.strip())
    print(f"armdata {args.command}: error: {text}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
