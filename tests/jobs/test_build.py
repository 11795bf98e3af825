"""`armdata build` on the real Bridge sample with a tiny Depth Anything model, and `armdata demo` on the built-in
sample: the shards read back with webdataset and Hugging Face datasets and carry every stream."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import yaml

from armdata.annotators.actions.tokenizer import make_test_tokenizer
from armdata.beam_jobs.build import build
from armdata.cli import main
from armdata.pipeline.stages.config import load_config
from armdata.schemas.sample import SampleAnnotation, hf_features
from armdata.schemas.source import load_source
from sample_checks import check_sample_streams
from depth_factory import save_tiny_depth_tokenizer

REPO = Path(__file__).resolve().parents[2]


def test_build_bridge_debug_with_tiny_depth_anything(bridge_debug_dir, tmp_path):
    import datasets
    import webdataset as wds

    from armdata.annotators.depth.random_init import save_random_depth_anything

    spec = yaml.safe_load((REPO / "sources" / "bridge_debug.yaml").read_text())
    spec["data"]["dir"] = str(bridge_debug_dir)
    # Bridge has no camera calibration: the trace is seeded from a coarse region where the WidowX gripper
    # enters the image (a real build would use the pointer locator, a Molmo checkpoint).
    spec["locator_hint"] = {"region": [16, 0, 48, 24]}
    src_path = tmp_path / "bridge_debug.yaml"
    src_path.write_text(yaml.safe_dump(spec))
    src = load_source(src_path)
    tiny = save_random_depth_anything(tmp_path / "tiny-da", arch="tiny", seed=0)
    # The statistics MolmoAct's own ActionProcessor computed on this sample (tests/annotators/golden), so that the
    # exported processed_action can be compared with what its preprocessing wrote, byte for byte.
    golden = json.loads((REPO / "tests" / "annotators" / "golden" / "molmoact_bridge_actions.json").read_text())
    (tmp_path / "stats.json").write_text(json.dumps({"bridge_debug": golden["stats"]}))
    cfg = load_config(None, None, **{
        "depth.model": tiny, "depth.input_size": 252, "actions.statistics": str(tmp_path / "stats.json"),
        "depth_tokenizer.checkpoint": save_tiny_depth_tokenizer(tmp_path / "vae.safetensors"),
        "actions.tokenizer": make_test_tokenizer(tmp_path / "tok"), "output.episodes_per_shard": 8,
    })
    out = tmp_path / "out"
    paths = build([src], str(out), cfg, [], audit=False)
    shards = sorted(glob.glob(str(out / "shards" / "*.tar")))
    assert len(shards) == 4

    samples = list(wds.WebDataset(shards, shardshuffle=False))
    assert len(samples) == 250
    templates = {"reasoning", "trajectory_conditioned", "depth_only", "trace_only"}
    for s in samples:
        assert {"jpg", "json", "image_1.jpg", "image_2.jpg", "traj.png"} <= set(s)
        check_sample_streams(SampleAnnotation.from_json(s["json"]), templates)

    # Every sample maps back to its source episode: Bridge's episode_metadata/file_path, in the json and the index.
    import pyarrow.parquet as pq
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(bridge_debug_dir))
    file_paths = {f'{m["file_path"].numpy().decode()}#{int(m["episode_id"])}'
                  for m in (ep["episode_metadata"] for ep in builder.as_dataset(split="train"))}
    anns = [SampleAnnotation.from_json(s["json"]) for s in samples]
    assert {a.source_episode_id for a in anns} == file_paths and len(file_paths) == 25
    index = pq.read_table(out / "index.parquet").to_pylist()
    assert {r["key"]: r["source_episode_id"] for r in index} == {a.key: a.source_episode_id for a in anns}

    ds = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train",
                               features=hf_features(views=["image_1", "image_2"]))
    assert len(ds) == 250 and ds[0]["jpg"].size == (64, 64)
    assert sorted(r["__key__"] for r in ds) == sorted(s["__key__"] for s in samples)

    run = json.loads((out / "run.json").read_text())
    depth = run["models"]["depth"]["backends"]["depth-anything"]
    assert depth.get("licence") or depth.get("license")
    card = Path(paths["card"]).read_text()
    assert run["config_hash"] in card and "bridge_debug" in card
    # Every model is identified: local weights and tokenizers by a content digest, in run.json and the card.
    assert depth["revision"].startswith("sha256:") and depth["revision"] in card
    assert run["models"]["action_tokenizer"]["revision"].startswith("sha256:")
    assert run["config"]["preset"] == "molmoact" and "Preset `molmoact`" in card
    assert "demo tokenizer" not in card
    stats = json.loads((out / "dataset_statistics.json").read_text())
    assert stats["bridge_debug"]["action"]["q01"] and stats["bridge_debug"]["num_trajectories"] == 25

    # MolmoAct's fine-tuning layout from these shards: processed_action exactly as its preprocessing writes it.
    assert main(["export", "molmoact", str(out), "--to", str(tmp_path / "ft"), "--layout", "finetune"]) == 0
    ft = datasets.load_from_disk(str(tmp_path / "ft"))
    first = golden["episodes"][0]
    # the first record of the first shard file, as tfds read it for the golden (file paths repeat across episodes)
    rows = [r for r in ft if r["key"].startswith("bridge_debug__train-00000-000000__")]
    assert all(r["source_episode_id"].startswith(first["file_path"]) for r in rows)
    assert rows
    for r in rows:
        assert r["processed_action"] == first["processed_action"][int(r["key"].rsplit("__", 1)[1])]


def test_demo_prints_where_everything_is(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARMDATA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for what in ("shards", "index", "card", "report"):
        assert what in printed
    assert (out / "audit" / "index.html").exists()
    assert (out / "index.parquet").exists() and (out / "README.md").exists()
    assert "armdata's demo tokenizer" in (out / "README.md").read_text()  # the card says so when it is used
    assert main(["check", str(out)]) == 0
