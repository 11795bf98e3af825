"""`armdata export lerobot`: a real build on a LeRobot v3.0 dataset (tests/lerobot_factory.py) exported as LeRobot
v3.0 and as MolmoAct2's depth companion, checked against the specification below (taken from LeRobot's and
MolmoAct2's code, file and line in each comment) and read back with pyarrow and Hugging Face datasets (the loader
LeRobot itself uses, with the features LeRobot derives from info.json).

Checked once by hand against LeRobot itself (December 2026): in a throwaway venv with lerobot 0.4.4 (--no-deps,
our CPU torch, a torchvision stand-in since no CPU torchvision wheel exists here), ``LeRobotDataset(root=...)``
loaded this module's export (28 frames, 5 episodes, fps 10, meta/stats.json read, every item's int and string
fields and depth codes equal to the parquet) and the molmoact2-depth companion (every buffer_codes and
depth_updated_mask row as written). Not a test: lerobot cannot be installed beside our torch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import lerobot_factory as lf
import output_factory as of
from armdata.annotators.actions.tokenizer import make_test_tokenizer
from armdata.annotators.depth.tokenizer import default_demo_tokenizer_path
from armdata.beam_jobs.build import build
from armdata.cli import main
from armdata.pipeline.output import reader as rd
from armdata.pipeline.output.export import EXPORTERS
from armdata.pipeline.output.export.lerobot import depth_buffer
from armdata.pipeline.stages.config import load_config
from armdata.schemas.sample import SampleAnnotation
from armdata.schemas.source import load_source
from armdata.schemas.templates import TEMPLATES

# --- LeRobot v3.0, as LeRobot 0.4.4 writes it (huggingface/lerobot tag v0.4.4) ---------------------------------
# src/lerobot/datasets/utils.py:54-66: INFO_PATH, STATS_PATH, EPISODES_DIR, DATA_DIR, CHUNK_FILE_PATTERN,
# DEFAULT_TASKS_PATH, DEFAULT_EPISODES_PATH, DEFAULT_DATA_PATH, DEFAULT_VIDEO_PATH.
SPEC_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
SPEC_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
SPEC_META_FILES = {"meta/info.json", "meta/stats.json", "meta/tasks.parquet"}
# utils.py:73-79 DEFAULT_FEATURES: every frame row has these, with these dtypes.
SPEC_DEFAULT_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                         "task_index": "int64"}
# utils.py:795-831 create_empty_dataset_info: the keys of meta/info.json.
SPEC_INFO_KEYS = {"codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks", "chunks_size",
                  "data_files_size_in_mb", "video_files_size_in_mb", "fps", "splits", "data_path", "video_path",
                  "features"}
# lerobot_dataset.py:328-397 (_save_episode_metadata), 1475-1483 (_save_episode_data), 399-425 (save_episode):
# the columns of meta/episodes rows that the loader reads (dataset_from_index/to_index: global index range).
SPEC_EPISODE_COLUMNS = {"episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
                        "dataset_from_index", "dataset_to_index", "meta/episodes/chunk_index",
                        "meta/episodes/file_index"}
# compute_stats.py:33-46 (RunningQuantileStats, DEFAULT_QUANTILES) and 115: the statistics per feature.
SPEC_STATS_KEYS = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
# utils.py:564-598 get_hf_features_from_features: shape (1,) -> Value(dtype), 1-D -> Sequence(length, Value).

# --- MolmoAct2's depth companion (allenai/molmoact2 scripts/generate_depth_annotation.py) -------------------------
# setup_output_dataset: info.json features depth_codes/buffer_codes int16 [100], depth_updated_mask bool [100],
# names null, a description; a top-level depth_vae block; meta copied, videos linked.
# process_parquet_file: the source data files with three columns appended: list<int16>, list<int16>, list<bool>.
SPEC_MA2 = {"depth_codes": ("int16", pa.list_(pa.int16())), "buffer_codes": ("int16", pa.list_(pa.int16())),
            "depth_updated_mask": ("bool", pa.list_(pa.bool_()))}
SPEC_MA2_VAE_KEYS = {"vae_image_size", "patch_size", "grid_h", "grid_w", "num_tokens", "cosine_threshold",
                     "depth_encoder", "depth_input_size", "image_key"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A finished output of a LeRobot v3.0 source (5 episodes, 2 per file, two cameras)."""
    from armdata.annotators.depth.random_init import save_random_depth_anything

    d = tmp_path_factory.mktemp("lr_export")
    ds = lf.write_v30(d / "toy_v30", lf.make_episodes(5, lengths=[6, 4, 7, 5, 6], seed=3), episodes_per_file=2)
    spec = dict(ds.source("toy"), locator_hint={"region": [0, 0, 24, 24]})
    (d / "toy.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    cfg = load_config(None, None, **{
        "depth.model": save_random_depth_anything(d / "tiny-da", arch="tiny", seed=0), "depth.input_size": 252,
        "depth_tokenizer.checkpoint": default_demo_tokenizer_path(),
        "actions.tokenizer": make_test_tokenizer(d / "tok"), "output.episodes_per_shard": 2,
    })
    out = d / "out"
    build([load_source(d / "toy.yaml")], str(out), cfg, [], audit=False)
    return ds, out


def _samples(out: Path) -> dict[str, SampleAnnotation]:
    return {k: SampleAnnotation.from_json(m["json"]) for s in rd.shard_paths(out) for k, m in rd.iter_shard(s)}


def _hf_features(features: dict):
    """LeRobot's features -> datasets.Features, the mapping of utils.py:564-598."""
    import datasets

    out = {}
    for k, f in features.items():
        if f["dtype"] == "video":
            continue
        if list(f["shape"]) == [1]:
            out[k] = datasets.Value(f["dtype"])
        else:
            out[k] = datasets.Sequence(length=f["shape"][0], feature=datasets.Value(f["dtype"]))
    return datasets.Features(out)


def test_export_follows_lerobot_v30_layout_info_schema_and_stats(built, tmp_path):
    ds, out = built
    to = tmp_path / "lr_out"
    assert main(["export", "lerobot", str(out), "--to", str(to)]) == 0
    files = {str(p.relative_to(to)) for p in to.rglob("*") if p.is_file()}
    assert files == SPEC_META_FILES | {SPEC_EPISODES_PATH.format(chunk_index=0, file_index=0),
                                       SPEC_DATA_PATH.format(chunk_index=0, file_index=0)}
    info = json.loads((to / "meta/info.json").read_text())
    assert set(info) == SPEC_INFO_KEYS
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["video_path"] is None
    assert info["data_path"] == SPEC_DATA_PATH
    assert info["total_episodes"] == 5 and info["total_frames"] == 28 and info["splits"] == {"train": "0:5"}
    feats = info["features"]
    for k, dt in SPEC_DEFAULT_FEATURES.items():
        assert feats[k]["dtype"] == dt and feats[k]["shape"] == [1] and feats[k]["fps"] == 10
    assert all("/" not in k for k in feats)  # utils.py:602-612 _validate_feature_names
    schema = pq.read_schema(to / SPEC_DATA_PATH.format(chunk_index=0, file_index=0))
    assert schema.names == list(feats)  # one column per feature, in order (no videos)
    assert pa.schema(list(_hf_features(feats).arrow_schema)).equals(pa.schema([schema.field(n) for n in schema.names]))
    eps = pq.read_table(to / SPEC_EPISODES_PATH.format(chunk_index=0, file_index=0)).to_pylist()
    assert SPEC_EPISODE_COLUMNS <= set(eps[0])
    assert [(e["episode_index"], e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == \
        [(0, 0, 6), (1, 6, 10), (2, 10, 17), (3, 17, 22), (4, 22, 28)]
    tasks = pq.read_table(to / "meta/tasks.parquet").to_pandas()
    assert list(tasks.columns) == ["task_index"] and list(tasks.index) == list(dict.fromkeys(lf.TASKS[i % 3]
                                                                                           for i in range(5)))
    stats = json.loads((to / "meta/stats.json").read_text())
    numeric = [k for k, f in feats.items() if f["dtype"] not in ("string", "video")]
    assert set(stats) == set(numeric)
    assert set(stats["action"]) == SPEC_STATS_KEYS and len(stats["action"]["mean"]) == 7
    # LeRobot's loader: load the data files with the features it derives from info.json.
    import datasets

    hf = datasets.load_dataset("parquet", data_files=str(to / "data/*/*.parquet"), split="train",
                               features=_hf_features(feats))
    assert len(hf) == 28 and hf[27]["index"] == 27


def test_export_reads_back_every_annotation_frame_for_frame(built, tmp_path):
    ds, out = built
    to = tmp_path / "lr_out"
    res = EXPORTERS.create("lerobot").export(out, to, "v3.0")
    assert res.rows == 28 and res.episodes == 5
    rows = pq.read_table(to / "data/chunk-000/file-000.parquet").to_pylist()
    samples = _samples(out)
    tasks = {t: i for i, t in enumerate(pq.read_table(to / "meta/tasks.parquet").to_pandas().index)}
    for r in rows:
        a = samples[r["annotation.sample_key"]]
        # frame for frame with the source: export episode i is the source's episode i, frame t its frame t
        assert r["annotation.source_episode_id"] == a.source_episode_id == f"toy_v30/episode_{r['episode_index']}"
        assert r["frame_index"] == a.step and r["timestamp"] == pytest.approx(a.step / 10)
        assert r["task_index"] == tasks[a.instruction]
        assert r["annotation.depth_codes"] == a.depth_codes
        trace = [x for p in (a.trace_uv255 or []) for x in p]
        assert r["annotation.trace_len"] == len(a.trace_uv255 or [])
        assert r["annotation.trace_uv255"] == trace + [-1] * (10 - len(trace))
        if a.gripper.uv is None:
            assert all(math.isnan(x) for x in r["annotation.gripper_uv"])
        else:
            assert r["annotation.gripper_uv"] == pytest.approx(a.gripper.uv)
        assert r["annotation.gripper_method"] == a.gripper.method
        assert r["annotation.gripper_confidence"] == pytest.approx(a.gripper.confidence)
        assert r["annotation.action_bins"] == a.action.bins and r["annotation.action_ids"] == a.action.ids
        assert r["action"] == pytest.approx(a.action.raw) and r["annotation.flags"] == ",".join(a.flags)
        for t in TEMPLATES.names():
            assert r[f"annotation.text.{t}.prompt"] == a.text.get(t, {}).get("prompt", "")
            assert r[f"annotation.text.{t}.answer"] == a.text.get(t, {}).get("answer", "")
    # and the actions are the source's own, row for row
    for e in ds.episodes:
        got = np.array([r["action"] for r in rows if r["episode_index"] == e.index], np.float32)
        np.testing.assert_array_equal(got, e.action)
    assert sum(1 for r in rows if r["annotation.trace_len"]) > 0


def test_molmoact2_depth_companion_is_the_source_dataset_with_three_columns(built, tmp_path):
    ds, out = built
    to = tmp_path / "toy_v30_depth"
    assert main(["export", "lerobot", str(out), "--to", str(to), "--layout", "molmoact2-depth"]) == 0
    assert (to / "videos").is_symlink() and (to / "videos").resolve() == (ds.root / "videos").resolve()
    src_meta = {str(p.relative_to(ds.root)) for p in (ds.root / "meta").rglob("*") if p.is_file()}
    assert {str(p.relative_to(to)) for p in (to / "meta").rglob("*") if p.is_file()} == src_meta
    info = json.loads((to / "meta/info.json").read_text())
    src_info = json.loads((ds.root / "meta/info.json").read_text())
    assert {k: v for k, v in info.items() if k != "depth_vae"} | {"features": src_info["features"]} == src_info
    for name, (dtype, _) in SPEC_MA2.items():
        f = info["features"][name]
        assert f["dtype"] == dtype and f["shape"] == [100] and f["names"] is None and f["description"]
    assert set(info["depth_vae"]) == SPEC_MA2_VAE_KEYS and info["depth_vae"]["image_key"] == lf.CAMERAS[0]
    samples = _samples(out)
    by_frame = {(int(a.source_episode_id.rsplit("_", 1)[1]), a.step): a for a in samples.values()}
    reference = lf.decoded_frames(ds)
    for f in ("file-000", "file-001", "file-002"):
        src = pq.read_table(ds.root / f"data/chunk-000/{f}.parquet")
        got = pq.read_table(to / f"data/chunk-000/{f}.parquet")
        assert got.column_names == src.column_names + list(SPEC_MA2)
        assert got.select(src.column_names).equals(src)  # the source rows, untouched
        for name, (_, typ) in SPEC_MA2.items():
            assert got.schema.field(name).type == typ
        rows = got.to_pylist()
        for ep in sorted({r["episode_index"] for r in rows}):
            ep_rows = [r for r in rows if r["episode_index"] == ep]
            codes = [by_frame[(ep, r["frame_index"])].depth_codes for r in ep_rows]
            assert [r["depth_codes"] for r in ep_rows] == codes
            frames = reference[ep][lf.CAMERAS[0]]
            _check_buffer(codes, [r["buffer_codes"] for r in ep_rows], [r["depth_updated_mask"] for r in ep_rows],
                          frames)


def _check_buffer(codes, buffers, masks, frames_rgb):
    """The buffer rule, recomputed here from the generator's description: frame 0 sets every cell; a later frame
    replaces the cells whose 32x32 patch of the 320x320 (bilinear) picture has cosine similarity < 0.996 to the
    previous frame's."""
    import cv2

    small = [cv2.resize(f, (320, 320), interpolation=cv2.INTER_LINEAR).astype(np.float64) for f in frames_rgb]
    assert masks[0] == [True] * 100 and buffers[0] == codes[0]
    for t in range(1, len(codes)):
        a = small[t - 1].reshape(10, 32, 10, 32, 3).transpose(0, 2, 1, 3, 4).reshape(100, -1)
        b = small[t].reshape(10, 32, 10, 32, 3).transpose(0, 2, 1, 3, 4).reshape(100, -1)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        expect = cos < 0.996
        assert masks[t] == expect.tolist()
        want = [c if m else p for c, m, p in zip(codes[t], expect, buffers[t - 1])]
        assert buffers[t] == want
    assert any(any(m) for m in masks[1:]) and not all(all(m) for m in masks[1:])  # the rule had work to do


def test_depth_buffer_keeps_unchanged_cells():
    frame = np.zeros((64, 64, 3), np.uint8) + 50
    moved = frame.copy()
    moved[:16, :16] = 255  # only the top-left of the picture changes
    codes = [[1] * 100, [2] * 100]
    buffers, masks = depth_buffer(codes, [frame, moved])
    changed = [i for i, m in enumerate(masks[1]) if m]
    assert changed and all(i // 10 < 3 and i % 10 < 3 for i in changed)
    assert all(buffers[1][i] == (2 if i in changed else 1) for i in range(100))


def test_molmoact2_depth_companion_of_an_rlds_output_aligns_with_the_v30_export(tmp_path):
    out = of.write_output(tmp_path / "out", tmp_path / "m", steps=4)
    comp, full = tmp_path / "comp", tmp_path / "full"
    EXPORTERS.create("lerobot").export(out.out_dir, comp, "molmoact2-depth")
    EXPORTERS.create("lerobot").export(out.out_dir, full, "v3.0")
    c = pq.read_table(comp / "data/chunk-000/file-000.parquet")
    f = pq.read_table(full / "data/chunk-000/file-000.parquet")
    base = list(SPEC_DEFAULT_FEATURES)
    assert c.select(base).equals(f.select(base))
    assert c.column("depth_codes").to_pylist() == [
        [int(x) for x in row] for row in f.column("annotation.depth_codes").to_pylist()]
    info = json.loads((comp / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and set(SPEC_MA2) <= set(info["features"]) and "depth_vae" in info


def test_export_of_a_folder_that_is_not_an_output_names_it(tmp_path):
    from armdata.schemas.errors import ArmdataError

    with pytest.raises(ArmdataError, match="no shards"):
        EXPORTERS.create("lerobot").export(tmp_path, tmp_path / "x", "v3.0")
