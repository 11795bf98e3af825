"""``armdata train-depth-tokenizer``: train the depth VQ-VAE on the shards ``armdata sample-depth`` wrote.

    armdata train-depth-tokenizer --data DIR --out DIR [--batch-size 64] [--lr 1e-3] [--steps 2000] [--resume]
                                  [--arch molmoact|demo] [--hidden-dim N --codebook-dim N] [--device cpu]

Writes ``OUT/ckpt-NNNNNNN.safetensors`` (+ ``.optim.safetensors``) every ``--checkpoint-every`` steps,
``OUT/metrics.jsonl`` (train and held-out lines: reconstruction MSE, codebook use, perplexity) and, at the end,
``OUT/tokenizer.safetensors``, which ``DepthTokenizer.from_checkpoint`` and the annotate job load. ``--resume``
continues from the newest checkpoint in OUT with the same batches as an uninterrupted run. Local training (torch),
no Beam runner.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from armdata.schemas.errors import ArmdataError

logger = logging.getLogger(__name__)

ARCHS = {
    "molmoact": {},  # MolmoAct's / AURORA's tokenizer (hidden 16, 512-dim codes): loads vae-final.pt's layout
    "demo": {"hidden_dim": 4, "codebook_dim": 64},  # the shipped demo tokenizer: same stages and grid, ~1 MB
}


def configure(parser: argparse.ArgumentParser) -> None:
    from armdata.training.depth_tokenizer import TrainConfig

    d = TrainConfig()
    parser.add_argument("--data", required=True, help="directory of depth-*.tar shards (armdata sample-depth)")
    parser.add_argument("--out", required=True, help="directory for checkpoints, metrics and tokenizer.safetensors")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="molmoact")
    parser.add_argument("--hidden-dim", type=int, default=None, help="override the architecture's hidden width")
    parser.add_argument("--codebook-dim", type=int, default=None, help="override the code vector size")
    parser.add_argument("--holdout-fraction", type=float, default=d.holdout_fraction)
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N (no silent fallback)")
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args, beam_args: list[str]) -> int:
    from armdata.annotators.depth.tokenizer import VQVAEConfig
    from armdata.training.depth_tokenizer import TrainConfig, mean_baseline_note, read_depth_shards, train_tokenizer

    if args.steps < 1 or args.batch_size < 1 or args.lr <= 0:
        raise ArmdataError("--steps and --batch-size must be positive, --lr above 0")
    arch = dict(ARCHS[args.arch])
    if args.hidden_dim:
        arch["hidden_dim"] = args.hidden_dim
    if args.codebook_dim:
        arch["codebook_dim"] = args.codebook_dim
    model_config = VQVAEConfig(**arch)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      holdout_fraction=args.holdout_fraction, checkpoint_every=args.checkpoint_every,
                      eval_every=args.eval_every, log_every=args.log_every, device=args.device,
                      torch_threads=args.torch_threads)
    keys, maps = read_depth_shards(args.data)
    logger.info("%d depth maps from %s; model %s; training %s", len(keys), args.data,
                dataclasses.asdict(model_config), dataclasses.asdict(cfg))
    ev = train_tokenizer(maps, keys, args.out, cfg, model_config=model_config, resume=args.resume,
                         progress=not args.no_progress)
    print(f"step {ev['step']}: {mean_baseline_note(ev)}")
    print(f"tokenizer: {args.out.rstrip('/')}/tokenizer.safetensors")
    return 0
