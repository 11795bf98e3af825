"""The annotate job end to end on Beam's in-process runner: shards that real readers read back, samples that
carry every stream, resume after SIGKILL, identical output with 1 and 2 worker processes, dead letters."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from armdata.annotators.actions.tokenizer import make_test_tokenizer
from armdata.beam_jobs.annotate import annotate_sources
from armdata.beam_jobs.stats import statistics_for
from armdata.pipeline.stages.config import load_config
from armdata.synthetic.world import make_sample
from depth_factory import save_tiny_depth_tokenizer
from armdata.schemas.errors import ArmdataError
from armdata.schemas.sample import SampleAnnotation, ShardManifest
from armdata.schemas.source import load_source
from sample_checks import check_sample_streams

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_NAMES = {"reasoning", "trajectory_conditioned", "depth_only", "trace_only"}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> str:
    return make_test_tokenizer(tmp_path_factory.mktemp("tok"))


def _sample_source(tmp: Path, episodes: int, steps: int) -> Path:
    data = make_sample(tmp / "data", episodes=episodes, steps=steps, seed=3)
    spec = yaml.safe_load((REPO / "sources" / "sample.yaml").read_text())
    spec["data"]["dir"] = data
    path = tmp / "sample.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory) -> Path:
    return _sample_source(tmp_path_factory.mktemp("sample"), episodes=4, steps=24)


_VAE: list[str] = []  # the tiny depth tokenizer every job here names (real or factory sources must name one)


@pytest.fixture(scope="module", autouse=True)
def depth_tokenizer_checkpoint(tmp_path_factory) -> str:
    _VAE[:] = [save_tiny_depth_tokenizer(tmp_path_factory.mktemp("vae") / "vae.safetensors")]
    return _VAE[0]


def _cfg(tokenizer_dir: str, **extra):
    return load_config(None, None, **{"actions.tokenizer": tokenizer_dir, "output.episodes_per_shard": 2,
                                      "depth_tokenizer.checkpoint": _VAE[0], **extra})


def _stats(sources, out_dir):
    return statistics_for(sources, str(out_dir), [], use_cache=False)


def _read_all(out_dir) -> dict[str, dict]:
    import webdataset as wds

    shards = sorted(glob.glob(os.path.join(out_dir, "shards", "*.tar")))
    return {s["__key__"]: s for s in wds.WebDataset(shards, shardshuffle=False)}


def _manifests(out_dir) -> dict[str, ShardManifest]:
    return {os.path.basename(p): ShardManifest.from_json(Path(p).read_text())
            for p in sorted(glob.glob(os.path.join(out_dir, "shards", "*.json")))}


def test_samples_carry_every_stream_and_read_back_with_webdataset(small_sample, tokenizer_dir, tmp_path):
    src = load_source(small_sample)
    out = tmp_path / "out"
    res = annotate_sources([src], str(out), _cfg(tokenizer_dir), _stats([src], out), [])
    assert (res.episodes_total, res.episodes_annotated, res.episodes_failed) == (4, 4, 0)
    samples = _read_all(out)
    assert len(samples) == 4 * 24 == res.samples
    for key, s in samples.items():
        assert "." not in key
        ann = SampleAnnotation.from_json(s["json"])
        assert ann.key == key
        assert s["jpg"][:2] == b"\xff\xd8" and "traj.png" in s
        check_sample_streams(ann, TEMPLATE_NAMES)
        assert ann.ground_truth["gripper_uv"] is not None
    # The index and the manifests agree with the shards.
    import pyarrow.parquet as pq

    index = pq.read_table(out / "index.parquet").to_pylist()
    assert sorted(r["key"] for r in index) == sorted(samples)
    mans = _manifests(out)
    assert sum(m.num_samples for m in mans.values()) == len(samples)
    for name, m in mans.items():
        tar = out / "shards" / name.replace(".json", ".tar")
        assert hashlib.sha256(tar.read_bytes()).hexdigest() == m.sha256
    # The source's JPEG bytes pass through unchanged.
    from armdata.pipeline.sources.rlds import read_episodes

    ep = next(read_episodes(src))
    key = f"{src.name}__{ep.episode_key}__00003"
    assert samples[key]["jpg"] == ep.jpeg[src.cameras.primary][3]


def test_shards_read_back_with_hf_datasets(small_sample, tokenizer_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    src = load_source(small_sample)
    out = tmp_path / "out"
    annotate_sources([src], str(out), _cfg(tokenizer_dir), _stats([src], out), [])
    shards = sorted(glob.glob(str(out / "shards" / "*.tar")))
    from armdata.schemas.sample import hf_features

    ds = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train", features=hf_features())
    assert len(ds) == 96
    row = ds[0]
    ann = row["json"]
    assert len(ann["depth_codes"]) == 100 and "reasoning" in ann["text"]


def test_one_and_two_worker_processes_give_the_same_samples(small_sample, tokenizer_dir, tmp_path):
    src = load_source(small_sample)
    stats = _stats([src], tmp_path / "stats")
    outs = {}
    for n, args in ((1, []), (2, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])):
        out = tmp_path / f"out{n}"
        annotate_sources([src], str(out), _cfg(tokenizer_dir), stats, args)
        outs[n] = {k: bytes(v["json"]) for k, v in _read_all(out).items()}
    assert outs[1].keys() == outs[2].keys()
    assert outs[1] == outs[2]
    assert {m.sha256 for m in _manifests(tmp_path / "out1").values()} == {
        m.sha256 for m in _manifests(tmp_path / "out2").values()}


def test_sigkill_halfway_then_rerun_gives_the_uninterrupted_output(tokenizer_dir, tmp_path):
    src_path = _sample_source(tmp_path, episodes=10, steps=16)
    src = load_source(src_path)
    stats_path = tmp_path / "dataset_statistics.json"
    stats_path.write_text(json.dumps(_stats([src], tmp_path / "s")))

    reference = tmp_path / "reference"
    annotate_sources([src], str(reference), _cfg(tokenizer_dir), json.loads(stats_path.read_text()), [])

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "armdata.cli", "annotate", "--source", str(src_path), "--out", str(out),
           "--statistics", str(stats_path), "--tokenizer", tokenizer_dir, "--episodes-per-shard", "2",
           "--depth-tokenizer", _VAE[0]]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = lambda: glob.glob(str(out / ".work" / "*" / "episodes" / "*.tar"))  # noqa: E731
    deadline = time.time() + 240
    while len(parts()) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(parts())
    assert proc.returncode == -signal.SIGKILL and 0 < done_before < 10, (proc.returncode, done_before)

    res = annotate_sources([src], str(out), _cfg(tokenizer_dir), json.loads(stats_path.read_text()), [])
    assert res.episodes_annotated == 10 - done_before < 5
    assert res.episodes_skipped == done_before
    assert {k: m.sha256 for k, m in _manifests(out).items()} == {k: m.sha256 for k, m in _manifests(reference).items()}
    keys = [k for m in _manifests(out).values() for k in m.keys]
    assert len(keys) == len(set(keys)) == 160


def test_real_source_without_a_depth_tokenizer_stops_with_a_clear_error(small_sample, tokenizer_dir, tmp_path):
    src = load_source(small_sample)  # the sample world written to a folder: real data as far as the job knows
    cfg = load_config(None, None, **{"actions.tokenizer": tokenizer_dir})
    with pytest.raises(ArmdataError, match=r"no depth tokenizer given for source\(s\) sample: pass --depth-tokenizer"):
        annotate_sources([src], str(tmp_path / "out"), cfg, {}, [])
    assert not (tmp_path / "out" / "shards").exists()


def test_new_statistics_or_a_new_tokenizer_never_keep_old_tokens(small_sample, tokenizer_dir, tmp_path):
    src = load_source(small_sample)
    out = tmp_path / "out"
    stats = _stats([src], tmp_path / "s")
    first = annotate_sources([src], str(out), _cfg(tokenizer_dir), stats, [])
    moved = json.loads(json.dumps(stats))
    moved[src.name]["action"]["q99"] = [x + 0.01 for x in moved[src.name]["action"]["q99"]]
    second = annotate_sources([src], str(out), _cfg(tokenizer_dir), moved, [])
    assert second.config_hash != first.config_hash and second.episodes_skipped == 0
    other = save_tiny_depth_tokenizer(tmp_path / "other.safetensors", seed=1)
    third = annotate_sources([src], str(out), _cfg(tokenizer_dir, **{"depth_tokenizer.checkpoint": other}), moved, [])
    assert third.config_hash not in (first.config_hash, second.config_hash) and third.episodes_skipped == 0
    assert third.provenance["depth_tokenizer"]["sha256"] != first.provenance["depth_tokenizer"]["sha256"]


def test_changed_config_never_mixes_old_and_new_samples(small_sample, tokenizer_dir, tmp_path):
    src = load_source(small_sample)
    out = tmp_path / "out"
    stats = _stats([src], out)
    first = annotate_sources([src], str(out), _cfg(tokenizer_dir), stats, [])
    second = annotate_sources([src], str(out), _cfg(tokenizer_dir, **{"templates.information_phrase": "these"}), stats, [])
    assert first.config_hash != second.config_hash
    assert second.episodes_skipped == 0 and second.episodes_annotated == 4
    samples = _read_all(out)
    assert len(samples) == 96
    for s in samples.values():
        ann = json.loads(s["json"])
        assert ann["provenance_id"] == second.config_hash
        assert "Based on these information" in ann["text"]["reasoning"]["answer"]
    again = annotate_sources([src], str(out), _cfg(tokenizer_dir, **{"templates.information_phrase": "these"}), stats, [])
    assert (again.episodes_skipped, again.episodes_annotated) == (4, 0)


def test_bad_episode_goes_to_dead_letters_and_the_rest_is_written(tmp_path, tokenizer_dir):
    import rlds_factory

    ds = rlds_factory.bridge_like(tmp_path / "rlds", num_steps=[6, 4, 5, 5], nan_action_at=(1, 2))
    src = load_source(rlds_factory.write_source(tmp_path, {**ds.source, "locator_hint": {"pixel": [10, 10]}}))
    out = tmp_path / "out"
    stats = statistics_for([src], str(tmp_path / "s"), [], use_cache=False, max_failure_fraction=0.5)
    from armdata.annotators.depth.random_init import save_random_depth_anything

    tiny = save_random_depth_anything(tmp_path / "tiny-depth-anything", arch="tiny", seed=0)
    cfg = _cfg(tokenizer_dir, **{"max_failure_fraction": 0.5, "depth.model": tiny, "depth.input_size": 56})
    res = annotate_sources([src], str(out), cfg, stats, [])
    assert res.episodes_failed == 1 and res.episodes_annotated == 3
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 1
    f = failures[0]
    assert (f["source"], f["step"], f["kind"]) == (src.name, 2, "non_finite_action")
    assert f["episode"] and f["field"].startswith("action")
    assert len(_read_all(out)) == 6 + 5 + 5


def test_shards_are_identical_with_batch_sizes_1_8_and_64(small_sample, tokenizer_dir, tmp_path):
    # Depth Anything V2 (tiny, random weights, real architecture, loaded from a directory as users load one),
    # so that every model stage runs; frames of several episodes share each call at batch 8 and 64.
    from armdata.annotators.depth.random_init import save_random_depth_anything

    model = save_random_depth_anything(tmp_path / "da", "tiny", seed=2)
    src = load_source(small_sample)
    stats = _stats([src], tmp_path / "stats")
    digests, hashes = {}, set()
    for b in (1, 8, 64):
        out = tmp_path / f"out{b}"
        cfg = load_config(None, [f"batch.depth.cpu={b}", f"batch.depth_codes.cpu={b}", f"batch.pointer.cpu={b}"],
                          **{"actions.tokenizer": tokenizer_dir, "output.episodes_per_shard": 2,
                             "depth.model": model, "depth_tokenizer.checkpoint": _VAE[0]})
        res = annotate_sources([src], str(out), cfg, stats, [])
        assert (res.episodes_annotated, res.episodes_failed) == (4, 0)
        hashes.add(res.config_hash)  # batch sizes say how to run, not what to make: one config hash
        digests[b] = {n: m.sha256 for n, m in _manifests(out).items()}
    assert len(hashes) == 1
    assert digests[1] == digests[8] == digests[64] and len(digests[1]) == 2
