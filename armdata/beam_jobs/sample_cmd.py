"""``armdata sample make OUT``: write the built-in synthetic RLDS sample (no download).

The dataset is rendered from a simple 3D world (see :mod:`armdata.synthetic.world`); its source file is
``sources/sample.yaml``, whose ``data.dir: builtin:sample`` makes a cached copy with the default parameters on
first use. This command writes a copy with chosen parameters wherever you like and prints the builder dir.
"""

from __future__ import annotations

import argparse

from armdata.synthetic.world import DEFAULT_PARAMS, make_sample


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sample_command", metavar="ACTION")
    sub.required = True
    make = sub.add_parser("make", help="write the synthetic sample as an RLDS builder dir under OUT",
                          description="Write OUT/armdata_sample/1.0.0 and print its path.")
    make.add_argument("out", metavar="OUT", help="folder to write into (OUT/armdata_sample/1.0.0)")
    make.add_argument("--episodes", type=int, default=DEFAULT_PARAMS["episodes"], help="number of episodes")
    make.add_argument("--steps", type=int, default=DEFAULT_PARAMS["steps"], help="steps per episode")
    make.add_argument("--seed", type=int, default=DEFAULT_PARAMS["seed"], help="seed (same seed, same bytes)")
    make.add_argument("--height", type=int, default=DEFAULT_PARAMS["height"], help="image height in pixels")
    make.add_argument("--width", type=int, default=DEFAULT_PARAMS["width"], help="image width in pixels")
    make.add_argument("--overwrite", action="store_true", help="replace an existing sample in OUT")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    if args.sample_command == "make":
        path = make_sample(args.out, episodes=args.episodes, steps=args.steps, seed=args.seed,
                           height=args.height, width=args.width, overwrite=args.overwrite)
        print(path)
        return 0
    raise AssertionError(f"unhandled sample action {args.sample_command!r}")  # argparse allows only 'make'
