"""Depth-map sampling, shards, the RunInference handler, and tokenizer training with resume."""

from __future__ import annotations

import json
import os

import apache_beam as beam
import numpy as np
import pytest
import torch
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from armdata.annotators.depth.estimator import DepthCameraBackend
from armdata.annotators.depth.tokenizer import DepthTokenizer, VQVAEConfig
from armdata.pipeline.stages.depth_handler import DepthModelHandler, keyed_depth_handler
from armdata.training.depth_tokenizer import (
    TrainConfig,
    candidate_steps,
    iter_depth_shard,
    latest_checkpoint,
    read_depth_shards,
    sample_u,
    split_holdout,
    train_tokenizer,
    write_depth_shard,
)
from armdata.schemas.errors import ArmdataError

TINY = VQVAEConfig(hidden_dim=2, codebook_dim=8, num_tokens=16)


def _synthetic_maps(n: int, seed: int = 0) -> np.ndarray:
    """Depth-like maps: a floor ramp plus a few raised rectangles."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(40, 200, 320)[:, None] * np.ones((1, 320))
    out = []
    for _ in range(n):
        m = yy.copy()
        for _ in range(3):
            y0, x0 = rng.integers(0, 260, 2)
            m[y0 : y0 + 60, x0 : x0 + 60] = rng.uniform(150, 255)
        out.append(m.astype(np.uint8))
    return np.stack(out)


# ---------------------------------------------------------------------------------------------------- sampling
def test_sample_coin_is_uniform_and_depends_only_on_its_arguments():
    us = np.array([sample_u(3, "src", f"ep{e}", t) for e in range(50) for t in range(40)])
    assert 0 <= us.min() and us.max() < 1
    assert abs(us.mean() - 0.5) < 0.03
    assert sample_u(3, "src", "ep1", 7) == sample_u(3, "src", "ep1", 7) != sample_u(4, "src", "ep1", 7)


def test_candidate_steps_keep_about_the_fraction():
    kept = sum(len(candidate_steps("s", f"e{i}", 100, 0.25, seed=0)) for i in range(40))
    assert 800 < kept < 1200
    with pytest.raises(ValueError):
        candidate_steps("s", "e", 10, 0.0, seed=0)


def test_shard_round_trip_keeps_maps_keys_and_metadata(tmp_path):
    maps = _synthetic_maps(3)
    items = [(f"s__e__{i:05d}", maps[i], {"step": i}) for i in (2, 0, 1)]
    write_depth_shard(tmp_path / "depth-00000-of-00001.tar", items)
    got = list(iter_depth_shard(str(tmp_path / "depth-00000-of-00001.tar")))
    assert [k for k, _, _ in got] == ["s__e__00000", "s__e__00001", "s__e__00002"]
    for i, (_, m, meta) in enumerate(got):
        np.testing.assert_array_equal(m, maps[i])
        assert meta == {"step": i}
    keys, stacked = read_depth_shards(tmp_path)
    assert stacked.shape == (3, 320, 320) and stacked.dtype == np.uint8


def test_reading_a_directory_without_shards_names_it(tmp_path):
    with pytest.raises(ArmdataError, match="no depth shards"):
        read_depth_shards(tmp_path)


def test_keys_with_dots_are_refused(tmp_path):
    with pytest.raises(ValueError, match="dot"):
        write_depth_shard(tmp_path / "depth-00000-of-00001.tar", [("a.b", _synthetic_maps(1)[0], {})])


# ---------------------------------------------------------------------------------------------------- handler
def test_depth_handler_batches_frames_of_mixed_sizes_like_the_backend():
    rng = np.random.default_rng(0)
    frames = [rng.uniform(0.3, 3.0, (24, 32)).astype(np.float32) for _ in range(3)]
    frames += [rng.uniform(0.3, 3.0, (40, 30)).astype(np.float32) for _ in range(2)]
    expected = [(i, DepthCameraBackend().process_batch(f[None])[0].tobytes()) for i, f in enumerate(frames)]
    with test_pipeline.TestPipeline() as p:
        out = (
            p
            | beam.Create(list(enumerate(frames)))
            | RunInference(keyed_depth_handler("depth-camera", max_batch_size=4))
            | beam.MapTuple(lambda k, m: (k, m.tobytes()))
        )
        assert_that(out, equal_to(expected))


def test_depth_handler_bounds_the_batch_size():
    h = DepthModelHandler("depth-camera", max_batch_size=3)
    assert h.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 3}
    with pytest.raises(ValueError):
        DepthModelHandler("depth-camera", min_batch_size=4, max_batch_size=2)


# ---------------------------------------------------------------------------------------------------- sample-depth job
@pytest.fixture(scope="module")
def sampled_dir(tmp_path_factory):
    from armdata.cli import main

    out = tmp_path_factory.mktemp("sampled")
    rc = main(["sample-depth", "--source", "sample", "--out", str(out), "--fraction", "0.2", "--max-maps", "12",
               "--num-shards", "2", "--seed", "5"])
    assert rc == 0
    return out


def test_sample_depth_writes_the_smallest_coins_of_the_sample(sampled_dir):
    manifest = json.loads((sampled_dir / "manifest.json").read_text())
    assert manifest["maps"] == 12 and manifest["backend"] == "depth-camera"
    keys, maps = read_depth_shards(sampled_dir)
    assert len(keys) == 12 and maps.shape == (12, 320, 320) and maps.dtype == np.uint8
    metas = [meta for f in sorted(sampled_dir.glob("depth-*.tar")) for _, _, meta in iter_depth_shard(str(f))]
    us = sorted(m["u"] for m in metas)
    assert all(u < 0.2 for u in us)
    episodes = sorted({m["episode"] for m in metas})
    # no step of these episodes with a smaller coin was left out
    all_us = sorted(sample_u(5, "sample", e, t) for e in episodes for t in range(40))
    assert us == [u for u in all_us if u <= us[-1]]


def test_sample_depth_is_deterministic(sampled_dir, tmp_path):
    from armdata.cli import main

    assert main(["sample-depth", "--source", "sample", "--out", str(tmp_path), "--fraction", "0.2",
                 "--max-maps", "12", "--num-shards", "2", "--seed", "5"]) == 0
    for f in sorted(sampled_dir.glob("depth-*.tar")):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes()


def test_sample_depth_takes_several_sources_one_folder_each(tmp_path):
    import yaml

    from armdata.cli import main
    from armdata.schemas.source import builtin_sources_dir

    spec = yaml.safe_load((builtin_sources_dir() / "sample.yaml").read_text())
    spec["name"] = "sample_copy"
    other = tmp_path / "sample_copy.yaml"
    other.write_text(yaml.safe_dump(spec))
    out = tmp_path / "maps"
    assert main(["sample-depth", "--source", "sample", "--source", str(other), "--out", str(out),
                 "--fraction", "0.2", "--max-maps", "4", "--num-shards", "1"]) == 0
    assert json.loads((out / "sample" / "manifest.json").read_text())["maps"] == 4
    assert json.loads((out / "sample_copy" / "manifest.json").read_text())["maps"] == 4
    keys, maps = read_depth_shards(out)  # training reads every source's folder
    assert len(keys) == 8 and {k.split("__")[0] for k in keys} == {"sample", "sample_copy"}


# ---------------------------------------------------------------------------------------------------- training
def _cfg(steps: int, **kw) -> TrainConfig:
    base = dict(steps=steps, batch_size=4, lr=1e-3, seed=0, log_every=1, eval_every=100, checkpoint_every=3,
                restart_dead_every=2, torch_threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_training_writes_checkpoints_metrics_and_a_loadable_tokenizer(tmp_path):
    maps = _synthetic_maps(12)
    keys = [f"k{i}" for i in range(12)]
    ev = train_tokenizer(maps, keys, tmp_path, _cfg(4), model_config=TINY, progress=False)
    assert {"recon_mse", "mean_baseline_mse", "codes_used", "perplexity"} <= set(ev)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x["kind"] == "train"]
    assert [x["step"] for x in train_lines] == [1, 2, 3, 4]
    assert all(np.isfinite(x["recon_mse"]) and x["perplexity"] >= 1 for x in train_lines)
    assert latest_checkpoint(tmp_path)[0] == 4
    tok = DepthTokenizer.from_checkpoint(tmp_path / "tokenizer.safetensors")
    assert tok.config == TINY
    assert tok.encode(maps[:2]).shape == (2, 100)


def test_resumed_training_equals_an_uninterrupted_run(tmp_path):
    maps = _synthetic_maps(12)
    keys = [f"k{i}" for i in range(12)]
    train_tokenizer(maps, keys, tmp_path / "straight", _cfg(6), model_config=TINY, progress=False)
    train_tokenizer(maps, keys, tmp_path / "split", _cfg(3), model_config=TINY, progress=False)
    train_tokenizer(maps, keys, tmp_path / "split", _cfg(6), model_config=TINY, resume=True, progress=False)
    a = DepthTokenizer.from_checkpoint(tmp_path / "straight" / "tokenizer.safetensors").model.state_dict()
    b = DepthTokenizer.from_checkpoint(tmp_path / "split" / "tokenizer.safetensors").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_holdout_split_is_stable_and_disjoint():
    keys = [f"k{i}" for i in range(200)]
    tr, ho = split_holdout(keys, 0.1, seed=0)
    tr2, ho2 = split_holdout(list(reversed(keys)), 0.1, seed=0)
    assert not set(tr) & set(ho) and len(tr) + len(ho) == 200 and 5 < len(ho) < 40
    assert sorted(keys[i] for i in ho) == sorted(list(reversed(keys))[i] for i in ho2)


def test_train_command_runs_on_sampled_shards(sampled_dir, tmp_path):
    from armdata.cli import main

    out = tmp_path / "tok"
    assert main(["train-depth-tokenizer", "--data", str(sampled_dir), "--out", str(out), "--steps", "2",
                 "--batch-size", "2", "--hidden-dim", "2", "--codebook-dim", "8", "--no-progress"]) == 0
    assert os.path.exists(out / "tokenizer.safetensors") and os.path.exists(out / "metrics.jsonl")
