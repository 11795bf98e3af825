"""Depth maps for training the depth VQ-VAE, and the training itself (torch, no Beam).

Sampling (used by the ``sample-depth`` Beam job): every (source, episode, step) gets a uniform number
``u = H(seed, source, episode, step)`` in [0, 1) from a hash, so the sample is the same on any runner, in any order,
with any number of workers. A step is kept when ``u < fraction``; with ``max_maps`` the kept steps with the smallest
``u`` win (a uniform sample of that size, too).

Shards: WebDataset tar files ``depth-SSSSS-of-NNNNN.tar``; each sample ``{key}.png`` (the uint8 320x320 map, 8-bit
grayscale PNG, lossless) and ``{key}.json`` (source, episode, step, u, backend). Keys have no dots. Each shard is
written to a temporary name and renamed, members sorted by key, fixed mtimes: a retried bundle rewrites the same
bytes.

Training (``train-depth-tokenizer``): Adam on reconstruction MSE + the EMA quantizer's commitment loss, as AiT
trains it, plus two standard VQ-VAE practices that change no weights' layout: the codebook starts from encoder
outputs of the first batch (AiT starts from N(0, 1), far from the encoder's scale, which leaves most codes dead),
and codes unused for a while restart at a random encoder output of the current batch. Checkpoints are safetensors
(model, and optimizer state beside it), resumable bit for bit: the batch at step s depends only on (seed, s).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import re
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from armdata.schemas.errors import ArmdataError

logger = logging.getLogger(__name__)

SHARD_RE = re.compile(r"depth-(\d{5})-of-(\d{5})\.tar$")
CKPT_RE = re.compile(r"ckpt-(\d{7})\.safetensors$")
FINAL_NAME = "tokenizer.safetensors"
METRICS_NAME = "metrics.jsonl"


# ------------------------------------------------------------------------------------------------------ sampling
def sample_u(seed: int, source: str, episode: str, step: int) -> float:
    """A uniform number in [0, 1) that depends only on its arguments (the sample's coin for one step)."""
    h = hashlib.blake2b(f"{seed}|{source}|{episode}|{step}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def sample_key(source: str, episode: str, step: int) -> str:
    """``{source}__{episode}__{step:05d}``: the sample's key (no dots, as WebDataset needs)."""
    return f"{source}__{episode}__{step:05d}"


def candidate_steps(source: str, episode: str, num_steps: int, fraction: float, seed: int) -> list[tuple[float, int]]:
    """(u, step) of the steps of one episode that the seeded coin keeps at this fraction."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    out = []
    for t in range(num_steps):
        u = sample_u(seed, source, episode, t)
        if u < fraction:
            out.append((u, t))
    return out


def shard_of(key: str, num_shards: int) -> int:
    """The shard a key goes to (a hash, so that shards fill evenly and the choice never depends on order)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big") % num_shards


def shard_name(index: int, num_shards: int) -> str:
    return f"depth-{index:05d}-of-{num_shards:05d}.tar"


def encode_png(map_u8: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(map_u8))
    if not ok:
        raise ArmdataError("PNG encoding of a depth map failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint8 or arr.ndim != 2:
        raise ArmdataError("a depth shard member is not an 8-bit grayscale PNG")
    return arr


def depth_shard_bytes(items: Iterable[tuple[str, np.ndarray, dict]]) -> bytes:
    """A WebDataset tar in memory: ``{key}.png`` + ``{key}.json`` per map, sorted by key, fixed mtimes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, m, meta in sorted(items, key=lambda it: it[0]):
            if "." in key:
                raise ValueError(f"sample key {key!r} holds a dot; WebDataset would split it")
            if m.dtype != np.uint8 or m.ndim != 2:
                raise ValueError(f"{key}: depth map must be uint8 [H, W], got {m.dtype} {list(m.shape)}")
            for suffix, data in (("png", encode_png(m)), ("json", json.dumps(meta, sort_keys=True).encode())):
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_depth_shard(path: str | os.PathLike, items: Iterable[tuple[str, np.ndarray, dict]]) -> int:
    """Write ``(key, uint8 map, metadata)`` items as one local WebDataset tar; atomic. Returns the count."""
    items = list(items)
    data = depth_shard_bytes(items)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return len(items)


def shard_files(data_dir: str | os.PathLike) -> list[str]:
    """The depth shards in a directory and its sub-folders (one per source), sorted. None found is an error."""
    files = sorted(str(p) for p in Path(data_dir).rglob("depth-*-of-*.tar") if SHARD_RE.search(p.name))
    if not files:
        raise ArmdataError(f"{data_dir}: no depth shards (depth-*-of-*.tar); make them with `armdata sample-depth`")
    return files


def iter_depth_shard(path: str) -> Iterator[tuple[str, np.ndarray, dict]]:
    """(key, uint8 map, metadata) for every sample of one shard."""
    pending: dict[str, dict] = {}
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, suffix = member.name.partition(".")
            pending.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    for key in sorted(pending):
        parts = pending[key]
        if "png" not in parts:
            raise ArmdataError(f"{path}: sample {key} has no .png member")
        meta = json.loads(parts["json"]) if "json" in parts else {}
        yield key, decode_png(parts["png"]), meta


def read_depth_shards(data_dir: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """All maps of a shard directory in key order: (keys, uint8 [M, S, S]). Holds them in memory (100 kB each)."""
    keys, maps = [], []
    for path in shard_files(data_dir):
        for key, m, _ in iter_depth_shard(path):
            keys.append(key)
            maps.append(m)
    order = np.argsort(keys, kind="stable")
    return [keys[i] for i in order], np.stack([maps[i] for i in order])


# ------------------------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class TrainConfig:
    """How the tokenizer is trained. Defaults follow the issue (batch 64, lr 1e-3)."""

    steps: int = 2000  # optimizer steps
    batch_size: int = 64  # maps per step
    lr: float = 1e-3  # Adam learning rate (constant)
    seed: int = 0  # model init, batch order, held-out split
    holdout_fraction: float = 0.1  # maps kept out of training for the reported figures
    log_every: int = 20  # steps between metrics.jsonl lines
    eval_every: int = 200  # steps between held-out evaluations
    checkpoint_every: int = 200  # steps between resumable checkpoints
    keep_checkpoints: int = 2  # older resumable checkpoints are deleted
    data_init: bool = True  # codebook starts from encoder outputs of the first batch
    restart_dead_every: int = 5  # codes not used at all in this many steps restart at an encoder output (0: never)
    flip: bool = True  # random left-right flips (a depth map mirrored is still a depth map)
    device: str = "cpu"
    torch_threads: int | None = None


def split_holdout(keys: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out), chosen by a hash of each key: the same maps are held out on every run."""
    if len(keys) < 10:
        idx = np.arange(len(keys))
        return idx, idx  # too few to hold any out: report on the training maps, and say so in the log
    u = np.array([sample_u(seed, "holdout", k, 0) for k in keys])
    held = u < fraction
    if not held.any():
        held[np.argmin(u)] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def evaluate(model, maps_u8: np.ndarray, batch_size: int = 64, device: str = "cpu") -> dict:
    """Reconstruction MSE against predicting each map's own mean, and codebook use, on these maps.

    MSE in the network's units ([-1, 1]) and in uint8 grey levels squared; ``codes_used`` counts distinct codes,
    ``perplexity`` is exp(entropy) of the code histogram (128 = all codes equally often).
    """
    import torch

    from armdata.annotators.depth.tokenizer import maps_to_input

    was_training = model.training
    model.eval()
    counts = np.zeros(model.config.num_tokens, np.int64)
    se = base = 0.0
    n = 0
    with torch.no_grad():
        for i in range(0, len(maps_u8), batch_size):
            x = maps_to_input(torch.from_numpy(maps_u8[i : i + batch_size]).to(device))
            out = model(x)
            se += float(((out["recon"] - x) ** 2).sum())
            base += float(((x - x.mean(dim=(1, 2, 3), keepdim=True)) ** 2).sum())
            n += x.numel()
            counts += np.bincount(out["codes"].reshape(-1).cpu().numpy(), minlength=len(counts))
    model.train(was_training)
    p = counts / max(1, counts.sum())
    nz = p[p > 0]
    scale = 127.5**2
    return {
        "maps": int(len(maps_u8)),
        "recon_mse": se / n,
        "mean_baseline_mse": base / n,
        "recon_mse_u8": se / n * scale,
        "mean_baseline_mse_u8": base / n * scale,
        "codes_used": int((counts > 0).sum()),
        "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
    }


def _batch(maps: np.ndarray, train_idx: np.ndarray, cfg: TrainConfig, step: int) -> np.ndarray:
    """The batch of step ``step``: depends only on (seed, step), so a resumed run sees the same data."""
    rng = np.random.default_rng([cfg.seed, step])
    pick = rng.choice(train_idx, size=cfg.batch_size, replace=len(train_idx) < cfg.batch_size)
    b = maps[np.sort(pick)]
    if cfg.flip:
        flips = rng.random(len(b)) < 0.5
        b = np.where(flips[:, None, None], b[:, :, ::-1], b)
    return np.ascontiguousarray(b)


def _spread_picks(flat, centres, n: int, rng: np.random.Generator):
    """``n`` rows of ``flat`` drawn with probability proportional to the squared distance to the nearest centre.

    k-means++ seeding: points far from every code (the worst-quantized ones) are the likeliest picks, so new codes
    land where the codebook is thin instead of piling up where it is already dense.
    """
    import torch

    flat = flat.detach()
    picks = []
    d2 = None if centres is None or len(centres) == 0 else torch.cdist(flat, centres).min(1).values.pow(2)
    for _ in range(n):
        if d2 is None or float(d2.sum()) <= 0:
            i = int(rng.integers(len(flat)))
        else:
            p = (d2 / d2.sum()).double().cpu().numpy()
            i = int(rng.choice(len(flat), p=p / p.sum()))
        picks.append(i)
        new = torch.cdist(flat, flat[i : i + 1]).reshape(-1).pow(2)
        d2 = new if d2 is None else torch.minimum(d2, new)
    return flat[torch.tensor(picks)]


def _init_codebook_from_data(model, z, rng: np.random.Generator) -> None:
    """Seed the whole codebook from one batch of encoder outputs (k-means++ picks)."""
    import torch

    q = model._vq_vae
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    picks = _spread_picks(flat, None, q.num_tokens, rng)
    with torch.no_grad():
        q._embedding.copy_(picks)
        q._ema_w.copy_(picks)
        q._ema_cluster_size.fill_(1.0)


def _restart_dead_codes(model, z, dead, rng: np.random.Generator) -> int:
    """Move the codes in ``dead`` (a bool mask) onto badly quantized encoder outputs of this batch."""
    import torch

    q = model._vq_vae
    idx = torch.nonzero(dead).reshape(-1)
    if len(idx) == 0:
        return 0
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    live = q._embedding[~dead]
    picks = _spread_picks(flat, live, len(idx), rng)
    with torch.no_grad():
        q._embedding[idx] = picks
        q._ema_w[idx] = picks
        q._ema_cluster_size[idx] = 1.0
    return int(len(idx))


def _save_optimizer(opt, path: str, extra: dict | None = None) -> None:
    """Adam's state (and ``extra`` training-state tensors under ``train.*``) as safetensors."""
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {f"train.{k}": v.detach().cpu().contiguous() for k, v in (extra or {}).items()}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            tensors[f"state.{pid}.{name}"] = v.detach().cpu().contiguous().reshape(v.shape)
    meta = {"param_groups": json.dumps(sd["param_groups"])}
    tmp = f"{path}.tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)


def _load_optimizer(opt, path: str) -> dict:
    """Restore Adam's state; returns the ``extra`` tensors saved beside it."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    tensors = load_file(path)
    state: dict[int, dict] = {}
    extra = {}
    for k, v in tensors.items():
        if k.startswith("train."):
            extra[k[len("train."):]] = v
            continue
        _, pid, name = k.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return extra


def latest_checkpoint(out_dir: str | os.PathLike) -> tuple[int, str] | None:
    """(step, path) of the newest resumable checkpoint in ``out_dir``, or None."""
    found = [(int(m.group(1)), str(p)) for p in Path(out_dir).glob("ckpt-*.safetensors")
             if (m := CKPT_RE.search(p.name))]
    return max(found) if found else None


def _write_checkpoint(model, opt, out_dir: Path, step: int, cfg: TrainConfig, keep: int, extra: dict) -> str:
    from armdata.annotators.depth.tokenizer import save_checkpoint

    path = out_dir / f"ckpt-{step:07d}.safetensors"
    _save_optimizer(opt, str(path).replace(".safetensors", ".optim.safetensors"), extra)
    # the model file last: a checkpoint counts only once its optimizer state is on disk
    save_checkpoint(model, path, {"step": str(step), "train_config": json.dumps(dataclasses.asdict(cfg))})
    olds = sorted(Path(out_dir).glob("ckpt-*.safetensors"))
    olds = [p for p in olds if CKPT_RE.search(p.name)]
    for p in olds[:-keep] if keep > 0 else []:
        p.unlink(missing_ok=True)
        Path(str(p).replace(".safetensors", ".optim.safetensors")).unlink(missing_ok=True)
    return str(path)


def train_tokenizer(maps_u8: np.ndarray, keys: list[str], out_dir: str | os.PathLike, cfg: TrainConfig,
                    model_config=None, resume: bool = False, progress: bool = True) -> dict:
    """Train the depth VQ-VAE on uint8 [M, 320, 320] maps; write checkpoints, metrics and ``tokenizer.safetensors``.

    ``resume``: continue from the newest ``ckpt-*.safetensors`` in ``out_dir`` (its config wins over
    ``model_config``). Returns the final held-out evaluation (see :func:`evaluate`) with ``step`` and ``seconds``.
    Metrics go to ``metrics.jsonl`` (one JSON object a line: kind ``train`` or ``eval``) and to the log.
    """
    import torch

    from armdata.annotators.depth.tokenizer import (
        MOLMOACT_VQVAE,
        AiTVQVAE,
        DepthTokenizer,
        maps_to_input,
        save_checkpoint,
    )

    if maps_u8.ndim != 3 or maps_u8.dtype != np.uint8:
        raise ValueError(f"maps must be uint8 [M, S, S], got {maps_u8.dtype} {list(maps_u8.shape)}")
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ArmdataError(f"train-depth-tokenizer: device {cfg.device!r} asked for, but CUDA is not available")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_idx, held_idx = split_holdout(keys, cfg.holdout_fraction, cfg.seed)
    if len(held_idx) == len(keys):
        logger.warning("only %d maps: the reported figures are on the training maps themselves", len(keys))

    start = 0
    found = latest_checkpoint(out) if resume else None
    if found:
        tok = DepthTokenizer.from_checkpoint(found[1])
        model = tok.model
        start = found[0]
        logger.info("resuming from %s (step %d)", found[1], start)
    else:
        if resume:
            logger.info("nothing to resume in %s; starting afresh", out)
        torch.manual_seed(cfg.seed)
        model = AiTVQVAE(model_config or MOLMOACT_VQVAE)
    if maps_u8.shape[1:] != (model.config.image_size, model.config.image_size):
        raise ValueError(f"maps are {list(maps_u8.shape[1:])}, the model expects {model.config.image_size}^2")
    model = model.to(cfg.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # code use since the last dead-code restart: part of the training state, saved with the optimizer
    usage = torch.zeros(model.config.num_tokens, dtype=torch.long, device=cfg.device)
    if found:
        extra = _load_optimizer(opt, found[1].replace(".safetensors", ".optim.safetensors"))
        for g in opt.param_groups:
            g["lr"] = cfg.lr
        if "usage" in extra:
            usage = extra["usage"].to(cfg.device)

    metrics_f = open(out / METRICS_NAME, "a", encoding="utf-8")

    def log(rec: dict) -> None:
        metrics_f.write(json.dumps(rec, sort_keys=True) + "\n")
        metrics_f.flush()

    held = maps_u8[held_idx]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="train-depth-tokenizer", unit="step")
    t0 = time.time()
    running: dict[str, float] = {}
    try:
        for step in range(start, cfg.steps):
            rng = np.random.default_rng([cfg.seed, step, 1])
            x = maps_to_input(torch.from_numpy(_batch(maps_u8, train_idx, cfg, step)).to(cfg.device))
            if step == 0 and cfg.data_init:
                with torch.no_grad():
                    _init_codebook_from_data(model, model.encoder(x), rng)
            res = model(x)
            opt.zero_grad(set_to_none=True)
            res["loss"].backward()
            opt.step()
            codes = res["codes"].reshape(-1)
            counts = torch.bincount(codes, minlength=model.config.num_tokens)
            usage += counts
            restarted = 0
            if cfg.restart_dead_every and (step + 1) % cfg.restart_dead_every == 0 and step + 1 < cfg.steps:
                restarted = _restart_dead_codes(model, res["z"], usage == 0, rng)
                usage.zero_()
            p = counts.float() / counts.sum()
            perp = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
            for k, v in (("loss", res["loss"].item()), ("recon_mse", res["recon_mse"].item()), ("perplexity", perp)):
                running[k] = v if k not in running else 0.9 * running[k] + 0.1 * v
            done = step + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(mse=f"{running['recon_mse']:.4f}", perp=f"{running['perplexity']:.1f}")
            if done % cfg.log_every == 0 or done == cfg.steps:
                log({"kind": "train", "step": done, "loss": res["loss"].item(), "recon_mse": res["recon_mse"].item(),
                     "perplexity": perp, "codes_used": int(codes.unique().numel()), "restarted": restarted,
                     "lr": cfg.lr, "seconds": round(time.time() - t0, 2)})
            if done % cfg.eval_every == 0 and done != cfg.steps:
                ev = evaluate(model, held, device=cfg.device)
                log({"kind": "eval", "step": done, **ev})
                logger.info("step %d held-out: mse %.5f (mean baseline %.5f), codes used %d, perplexity %.1f",
                            done, ev["recon_mse"], ev["mean_baseline_mse"], ev["codes_used"], ev["perplexity"])
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                _write_checkpoint(model, opt, out, done, cfg, cfg.keep_checkpoints, {"usage": usage})
    finally:
        if bar is not None:
            bar.close()
        metrics_f.close()

    ev = evaluate(model, held, device=cfg.device)
    ev.update(step=max(start, cfg.steps), seconds=round(time.time() - t0, 1), heldout=len(held_idx) != len(keys))
    with open(out / METRICS_NAME, "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": "eval", **ev}, sort_keys=True) + "\n")
    save_checkpoint(model.cpu(), out / FINAL_NAME, {"step": str(ev["step"]), "final_eval": json.dumps(ev)})
    logger.info("final held-out: mse %.5f (mean baseline %.5f), codes used %d/%d, perplexity %.1f -> %s",
                ev["recon_mse"], ev["mean_baseline_mse"], ev["codes_used"], model.config.num_tokens,
                ev["perplexity"], out / FINAL_NAME)
    return ev


def mean_baseline_note(ev: dict) -> str:
    """One line for people: the model's MSE against predicting each map's mean, and codebook use."""
    ratio = ev["recon_mse"] / ev["mean_baseline_mse"] if ev["mean_baseline_mse"] else math.nan
    return (f"recon MSE {ev['recon_mse']:.5f} ({ev['recon_mse_u8']:.1f} grey levels^2) vs mean-of-map baseline "
            f"{ev['mean_baseline_mse']:.5f} ({ev['mean_baseline_mse_u8']:.1f}); ratio {ratio:.3f}; "
            f"codes used {ev['codes_used']}, perplexity {ev['perplexity']:.1f} on {ev['maps']} maps")
