"""The LeRobot reader on datasets tests/lerobot_factory.py writes from the format's specification: v3.0 (several
episodes per data and video file) and v2.1 (one file per episode), two cameras, H.264 (libx264) and AV1
(libsvtav1, the AV1 encoder in PyAV's bundled FFmpeg; decoded by libdav1d). Every frame must equal the frame PyAV
decodes on its own from the same file at the same position, and stay within codec loss of the frame that was
encoded (and nearer to it than to its neighbours: no frame taken from the wrong timestamp); every action, state
and instruction must equal the written one. Bad input is one clear error naming dataset, episode and frame.

The factory's v3.0 datasets were checked once by hand against LeRobot itself (December 2026; lerobot 0.4.4 in a
throwaway venv, see tests/output/test_export_lerobot.py): ``LeRobotDataset`` loaded both (H.264 and AV1), and for
all 56 frame-camera pairs asked its video decoder for exactly the files and timestamps this reader decodes; each
of those timestamps has a frame within LeRobot's default 1e-4 s.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lerobot_factory as lf
from armdata.pipeline.sources.inspect import draft_source, inspect_builder, validate_source
from armdata.pipeline.sources.lerobot import LeRobotEpisodeReader, LeRobotFormatError, tolerance_s
from armdata.pipeline.sources.read import read_episodes, read_episodes_or_errors
from armdata.pipeline.sources.standardize import standardize
from armdata.schemas.errors import RecordError, SourceFileError
from armdata.schemas.source import SourceConfig, load_source

CODECS = ["libx264", "libsvtav1"]


def _write(version: str, root, eps, codec="libx264"):
    if version == "v3.0":
        return lf.write_v30(root, eps, codec=codec, episodes_per_file=2)
    return lf.write_v21(root, eps, codec=codec)


def _source(ds, **extra) -> SourceConfig:
    return SourceConfig.model_validate(ds.source(**extra))


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_every_frame_action_and_instruction_read_back_exactly(version, codec, tmp_path):
    eps = lf.make_episodes(5, lengths=[6, 4, 7, 5, 3], seed=1)
    ds = _write(version, tmp_path / f"toy_{version}", eps, codec)
    reference = lf.decoded_frames(ds)
    got = list(read_episodes(_source(ds)))
    assert [g.episode_key for g in got] == [f"train-00000-{i:06d}" for i in range(5)]
    for g, e in zip(got, eps):
        assert g.source_episode_id == f"toy_{version}/episode_{e.index}"
        assert g.instruction == e.task
        np.testing.assert_array_equal(g.actions_raw["action"], e.action)
        np.testing.assert_array_equal(g.state["observation.state"], e.state)
        for cam in lf.CAMERAS:
            frames = g.frames[cam]
            assert frames.shape == e.frames[cam].shape and frames.dtype == np.uint8
            np.testing.assert_array_equal(frames, reference[e.index][cam])  # the same frames PyAV decodes
            err = np.abs(frames.astype(np.int16) - e.frames[cam]).mean(axis=(1, 2, 3))
            assert err.max() < 8.0, err  # codec loss (yuv420p chroma) only
            for t in range(e.length):  # and the right frame: nearer its own picture than the neighbours'
                others = [s for s in (t - 1, t + 1) if 0 <= s < e.length]
                for s in others:
                    assert err[t] < np.abs(frames[t].astype(np.int16) - e.frames[cam][s]).mean()
        std = standardize(g, _source(ds))
        np.testing.assert_array_equal(std.actions, e.action)


def test_tolerance_is_lerobots_rule():
    # lerobot v0.4.4 src/lerobot/datasets/lerobot_dataset.py line 1861 (MultiLeRobotDataset.tolerance_s) and
    # online_buffer.py line 106: 1 / fps - 1e-4.
    assert tolerance_s(10) == pytest.approx(0.0999)
    assert tolerance_s(30) == pytest.approx(1 / 30 - 1e-4)


# ------------------------------------------------------------------------------------------------------------
# bad input


@pytest.fixture()
def v30(tmp_path):
    return lf.write_v30(tmp_path / "bad_v30", lf.make_episodes(4, lengths=[5, 4, 6, 3], seed=2), episodes_per_file=2)


def _errors(ds) -> list[RecordError]:
    return [x for x in read_episodes_or_errors(_source(ds)) if isinstance(x, RecordError)]


def test_missing_video_file_names_dataset_episode_and_file(v30):
    (v30.root / "videos/observation.images.wrist/chunk-000/file-001.mp4").unlink()
    errs = _errors(v30)
    assert [e.episode for e in errs] == ["train-00000-000002", "train-00000-000003"]
    e = errs[0]
    assert e.kind == "missing_video" and e.field == "observation.images.wrist"
    assert "dataset bad_v30 episode 2" in e.message and "file-001.mp4 is missing" in e.message


def test_timestamp_with_no_frame_names_the_frame(v30):
    table = pq.read_table(v30.root / "data/chunk-000/file-000.parquet")
    ts = table.column("timestamp").to_numpy().copy()
    # Episode 1 frame 2 (rows 5.. of file-000) says 10 s: past the end of the video file, so no frame is within
    # the tolerance (inside a video's span some frame always is: the tolerance is nearly a whole frame interval).
    ts[5 + 2] += 10.0
    table = table.set_column(table.column_names.index("timestamp"), "timestamp", pa.array(ts, pa.float32()))
    pq.write_table(table, v30.root / "data/chunk-000/file-000.parquet")
    reader = LeRobotEpisodeReader(_source(v30))
    reader.read("train-00000-000000")  # the other episode of the file is fine
    with pytest.raises(RecordError) as ei:
        reader.read("train-00000-000001")
    e = ei.value
    assert e.kind == "frame_not_found" and e.step == 2 and e.field == lf.CAMERAS[0]
    assert "dataset bad_v30 episode 1 frame 2" in e.message and "file-000.mp4" in e.message


def test_episode_row_range_past_its_file(v30):
    path = v30.root / "meta/episodes/chunk-000/file-000.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[1]["dataset_to_index"] += 3  # episode 1 claims 3 more frames than file-000 holds
    rows[1]["length"] += 3
    pq.write_table(pa.Table.from_pylist(rows), path)
    errs = _errors(v30)
    assert [e.episode for e in errs] == ["train-00000-000001"]
    e = errs[0]
    assert e.kind == "row_range" and e.step == 4  # the first frame past the file
    assert "dataset bad_v30 episode 1" in e.message and "run past data/chunk-000/file-000.parquet" in e.message


def test_features_entry_that_does_not_match_the_parquet_schema(v30):
    info_path = v30.root / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["features"]["observation.state"]["shape"] = [8]
    info_path.write_text(json.dumps(info))
    with pytest.raises(LeRobotFormatError, match=r"dataset bad_v30: features entry 'observation.state' says float32 "
                                                 r"shape \(8,\) but data/chunk-000/file-000.parquet stores"):
        LeRobotEpisodeReader(_source(v30)).check()
    # a later file that disagrees is a dead letter for its episodes, named by file
    info["features"]["observation.state"]["shape"] = [7]
    info_path.write_text(json.dumps(info))
    path = v30.root / "data/chunk-000/file-001.parquet"
    table = pq.read_table(path)
    i = table.column_names.index("action")
    wide = pa.array([r + [0.0] for r in table.column("action").to_pylist()], pa.list_(pa.float32(), 8))
    pq.write_table(table.set_column(i, "action", wide), path)
    errs = _errors(v30)
    assert [e.episode for e in errs] == ["train-00000-000002", "train-00000-000003"]
    assert errs[0].kind == "schema_mismatch" and "file-001.parquet stores it as fixed_size_list" in errs[0].message


def test_source_file_naming_a_feature_that_does_not_exist(v30):
    with pytest.raises(SourceFileError, match=r"cameras.primary: no feature 'observation.images.top' in dataset "
                                              r"bad_v30 \(keys that exist: action, episode_index, .*observation.images.front"):
        LeRobotEpisodeReader(_source(v30, cameras={"primary": "observation.images.top"})).check()


def test_a_folder_that_is_not_lerobot(tmp_path, v30):
    shutil.rmtree(v30.root / "meta")
    (v30.root / "meta").mkdir()
    with pytest.raises(LeRobotFormatError, match="bad_v30: not a LeRobot dataset"):
        LeRobotEpisodeReader(_source(v30)).check()


# ------------------------------------------------------------------------------------------------------------
# inspect, draft, validate


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_inspect_drafts_a_source_file_that_validates(version, tmp_path):
    ds = _write(version, tmp_path / "so_arm", lf.make_episodes(3, seed=4))
    insp = inspect_builder(ds.root, episodes=2)
    assert insp.format == "lerobot" and insp.name == "so_arm"
    assert {"observation.images.front", "action", "observation.state", "task_index"} <= {f.path for f in insp.fields}
    text = draft_source(insp)
    path = tmp_path / "so_arm.yaml"
    path.write_text(text)
    cfg = load_source(path)
    assert cfg.data.format == "lerobot" and cfg.cameras.primary == "observation.images.front"
    assert cfg.cameras.wrist == "observation.images.wrist" and cfg.instruction.path == "task_index"
    assert cfg.state.keys == ["observation.state"] and cfg.control_hz == 10.0
    report = validate_source(path, episodes=2)
    assert report.ok, report.render()


def test_image_features_stored_in_parquet_are_read_exactly(tmp_path):
    """A camera LeRobot stores as an image feature (PNG in the parquet, no video) beside one stored as video."""
    eps = lf.make_episodes(3, lengths=[4, 5, 3], seed=5)
    ds = lf.write_v30(tmp_path / "img_v30", eps, image_cameras=(lf.CAMERAS[1],))
    info = json.loads((ds.root / "meta/info.json").read_text())
    assert info["features"][lf.CAMERAS[1]]["dtype"] == "image"
    reference = lf.decoded_frames(ds)
    got = list(read_episodes(_source(ds)))
    for g, e in zip(got, eps):
        np.testing.assert_array_equal(g.frames[lf.CAMERAS[1]], e.frames[lf.CAMERAS[1]])  # PNG: lossless
        np.testing.assert_array_equal(g.frames[lf.CAMERAS[0]], reference[e.index][lf.CAMERAS[0]])


def test_splits_of_info_json_choose_the_episodes(v30):
    from armdata.pipeline.sources.rlds import DataLocationError

    info_path = v30.root / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["splits"] = {"train": "0:3", "val": "3:4"}
    info_path.write_text(json.dumps(info))
    assert LeRobotEpisodeReader(_source(v30)).episode_keys() == [f"train-00000-{i:06d}" for i in range(3)]
    val = _source(v30, data={"dir": str(v30.root), "format": "lerobot", "split": "val"})
    assert [e.episode_key for e in read_episodes(val)] == ["val-00000-000003"]
    with pytest.raises(DataLocationError, match="unknown split 'test' in dataset bad_v30; splits that exist: train, val"):
        LeRobotEpisodeReader(_source(v30, data={"dir": str(v30.root), "format": "lerobot", "split": "test"})).check()
