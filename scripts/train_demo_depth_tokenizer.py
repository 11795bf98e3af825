"""Regenerate armdata/assets/depth_tokenizer_demo.safetensors: a small depth VQ-VAE for the offline demo.

Depth maps come from the built-in synthetic sample's depth camera (the backend the demo uses for it), through the
same ``depth-camera`` backend the annotate job runs: the built-in sample itself (seed 0) is held out entirely for
the reported figures; training uses more episodes of the same world rendered with other seeds.

The network is the AiT layout with hidden 4 and 64-dim codes instead of 16 and 512 (MolmoAct's full size is 7.8M
values, 31 MB in fp32), stored in fp16 so it ships in the package (~1 MB). It keeps the 5 stride-2 stages, the
10x10 grid and the 128-code codebook, so its tokens have MolmoAct's form; their meaning is its own.

    python scripts/train_demo_depth_tokenizer.py [--steps 300] [--batch-size 16] [--episodes 18] [--out PATH]

Prints the held-out reconstruction MSE against the mean-of-map baseline and the codebook use.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def sample_maps(data_dir: str | None, episodes_limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Depth-camera maps (uint8 [M, 320, 320]) of every step of the built-in sample or of a copy at data_dir."""
    from armdata.annotators.depth.estimator import make_depth_backend
    from armdata.training.depth_tokenizer import sample_key
    from armdata.pipeline.sources.rlds import read_episodes
    from armdata.pipeline.sources.standardize import standardize
    from armdata.schemas.source import DataLocation, resolve_source

    source = resolve_source("sample")
    if data_dir:
        source = source.model_copy(update={"data": DataLocation(dir=data_dir, split=source.data.split)})
    backend = make_depth_backend("depth-camera", camera=source.cameras.depth)
    backend.setup()
    keys, maps = [], []
    for ep in read_episodes(source, limit=episodes_limit):
        st = standardize(ep, source)
        maps.append(backend.process_batch(st.depth_camera))
        keys += [sample_key(source.name, f"{os.path.basename(str(data_dir or 'builtin'))}-{st.episode_key}", t)
                 for t in range(st.num_steps)]
    return keys, np.concatenate(maps)


def main(argv: list[str] | None = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "armdata", "assets", "depth_tokenizer_demo.safetensors")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16, help="16 on this CPU (64 costs ~5 s a step)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--episodes", type=int, default=18, help="training episodes rendered with seed 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=default_out)
    ap.add_argument("--work", default=None, help="keep the training run here (default: a temporary folder)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from armdata.annotators.depth.tokenizer import (
        AiTVQVAE,
        DepthTokenizer,
        VQVAEConfig,
        save_checkpoint,
        sha256_file,
    )
    from armdata.training.depth_tokenizer import TrainConfig, evaluate, mean_baseline_note, train_tokenizer
    from armdata.synthetic.world import make_sample

    torch.set_num_threads(1)  # on a shared 2-core machine one thread is faster than two fighting
    work = args.work or tempfile.mkdtemp(prefix="armdata-demo-depth-")
    t0 = time.time()
    train_dir = make_sample(os.path.join(work, "train_sample"), episodes=args.episodes, seed=1, overwrite=True)
    train_keys, train_maps = sample_maps(train_dir)
    test_keys, test_maps = sample_maps(None)
    print(f"maps: {len(train_maps)} for training (seed-1 episodes), {len(test_maps)} held out (the built-in "
          f"sample), made in {time.time() - t0:.0f} s")

    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      holdout_fraction=0.05, eval_every=100, checkpoint_every=100, log_every=10)
    model_cfg = VQVAEConfig(hidden_dim=4, codebook_dim=64)
    run_dir = os.path.join(work, "run")
    ev_train_split = train_tokenizer(train_maps, train_keys, run_dir, cfg, model_config=model_cfg)
    tok = DepthTokenizer.from_checkpoint(os.path.join(run_dir, "tokenizer.safetensors"))
    ev = evaluate(tok.model, test_maps)
    print("held-out (seed-1 split):", mean_baseline_note(ev_train_split))
    print("built-in sample       :", mean_baseline_note(ev))

    # ship in fp16; check that the shipped file codes like the fp32 model
    shipped = AiTVQVAE(model_cfg)
    shipped.load_state_dict(tok.model.state_dict())
    tmp_out = args.out + ".new"
    save_checkpoint(shipped, tmp_out, {"trained_on": "armdata built-in sample depth camera (seed-1 episodes)",
                                       "final_eval_builtin_sample": json.dumps(ev)}, dtype=torch.float16)
    fp16 = DepthTokenizer.from_checkpoint(tmp_out)
    agree = float((fp16.encode(test_maps) == tok.encode(test_maps)).mean())
    ev16 = evaluate(fp16.model, test_maps)
    print("fp16 shipped file     :", mean_baseline_note(ev16), f"; codes equal to fp32 on {agree:.1%}")
    os.replace(tmp_out, args.out)
    print(f"wrote {os.path.normpath(args.out)} ({os.path.getsize(args.out) / 1e6:.2f} MB, "
          f"sha256 {sha256_file(args.out)[:16]}) in {time.time() - t0:.0f} s")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    ok = ev16["recon_mse"] < 0.5 * ev16["mean_baseline_mse"] and ev16["codes_used"] >= model_cfg.num_tokens // 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
