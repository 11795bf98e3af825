"""``armdata decode-action``: a text answer -> continuous actions, as MolmoAct's ``parse_action`` reads it.

For checking a round trip by hand::

    armdata decode-action --stats out/dataset_statistics.json --dataset bridge_debug \\
        --text "... the action that the robot should take is [ĠÐ«, Ñģ, ...]."
    armdata decode-action --stats ... --dataset bridge_debug --encode 0.01,0,0,0,0,0,1   # the other way

The answer is read from ``--text``, ``--text-file`` or standard input. Output is JSON: the token ids of every
action list found and the decoded actions.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from armdata.schemas.errors import ArmdataError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stats", required=True, help="dataset_statistics.json")
    parser.add_argument("--dataset", default=None,
                        help="dataset name in the statistics file (may be left out when it holds one dataset)")
    parser.add_argument("--tokenizer", default=None,
                        help="hub id or local directory of the tokenizer (default Qwen/Qwen2-7B)")
    parser.add_argument("--revision", default=None, help="hub revision of the tokenizer")
    parser.add_argument("--preset", default="molmoact", choices=["molmoact", "armdata"],
                        help="the build's preset: molmoact writes the gripper as 1 - a (float32, eps 1e-8), armdata "
                             "as the source says; decoding maps the gripper back accordingly")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--text", default=None, help="the answer text")
    src.add_argument("--text-file", default=None, help="a file holding the answer text")
    src.add_argument("--encode", default=None, metavar="A1,...,A7",
                     help="instead of decoding: print the action text and ids of this continuous action")


def _dataset_entry(path: str, name: str | None) -> tuple[str, dict]:
    try:
        with open(path, encoding="utf-8") as f:
            stats = json.load(f)
    except FileNotFoundError:
        raise ArmdataError(f"{path}: no such statistics file") from None
    if name is None:
        if len(stats) != 1:
            raise ArmdataError(f"{path} holds several datasets; pass --dataset, one of {', '.join(sorted(stats))}")
        name = next(iter(stats))
    if name not in stats:
        raise ArmdataError(f"{path}: no dataset {name!r}; datasets: {', '.join(sorted(stats))}")
    return name, stats[name]


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from armdata.annotators.actions.tokenizer import DEFAULT_TOKENIZER, ActionTokenizer
    from armdata.annotators.actions.normalize import (
        NORMALIZERS,
        ActionStats,
        bins_to_ids,
        render_action_text,
        to_bins,
    )
    from armdata.annotators.molmoact_parse import extract_action_id_lists, parse_actions

    name, entry = _dataset_entry(args.stats, args.dataset)
    stats = ActionStats.from_json(entry)
    tok = ActionTokenizer.from_pretrained(args.tokenizer or DEFAULT_TOKENIZER, revision=args.revision)

    if args.encode is not None:
        try:
            action = np.array([float(x) for x in args.encode.split(",")], dtype=np.float64)
        except ValueError:
            raise ArmdataError(f"--encode wants {stats.dim} comma-separated numbers, got {args.encode!r}") from None
        if action.shape != (stats.dim,):
            raise ArmdataError(f"--encode wants {stats.dim} numbers, got {action.size}")
        bins = to_bins(NORMALIZERS[args.preset](action, stats))
        ids = bins_to_ids(bins, tok.vocab_size)
        print(json.dumps({"dataset": name, "bins": bins.tolist(), "ids": ids.tolist(),
                          "text": render_action_text(tok.ids_to_symbols(ids))}, ensure_ascii=False))
        return 0

    if args.text is not None:
        text = args.text
    elif args.text_file is not None:
        with open(args.text_file, encoding="utf-8") as f:
            text = f.read()
    else:
        text = sys.stdin.read()
    ids = extract_action_id_lists(text, tok, only_len=stats.dim)
    actions = parse_actions(text, tok, stats)
    if args.preset == "molmoact":  # the tokens carry 1 - a for the gripper (MolmoAct's ActionProcessor)
        for a in actions:
            a[-1] = 1.0 - a[-1]
    print(json.dumps({"dataset": name, "ids": ids, "actions": [a.tolist() for a in actions]}))
    if not actions:
        print(f"no list of {stats.dim} action tokens found in the text", file=sys.stderr)
        return 1
    return 0
