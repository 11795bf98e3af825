"""The built-in synthetic sample: deterministic, readable by tfds, physically consistent, exact ground truth.

One 2-episode x 10-step sample is written per module (a few seconds); everything else reads it back through
tfds, as the pipeline does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from armdata.synthetic import world as sw
from armdata.schemas.errors import ArmdataError
from armdata.schemas.source import load_source

REPO = Path(__file__).resolve().parents[2]
EPISODES, STEPS = 2, 10


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    return Path(sw.make_sample(tmp_path_factory.mktemp("sample"), episodes=EPISODES, steps=STEPS, seed=3))


@pytest.fixture(scope="module")
def episodes(sample_dir) -> list[dict]:
    """The sample read back with tfds: per episode, stacked step arrays and the metadata."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(sample_dir))
    out = []
    for ep in tfds.as_numpy(builder.as_dataset(split="train")):
        steps = list(ep["steps"])
        out.append(
            {
                "image": np.stack([s["observation"]["image"] for s in steps]),
                "depth": np.stack([s["observation"]["depth"] for s in steps]),
                "state": np.stack([s["observation"]["state"] for s in steps]),
                "action": np.stack([s["action"] for s in steps]),
                "instruction": [s["language_instruction"].decode() for s in steps],
                "is_first": np.array([s["is_first"] for s in steps]),
                "is_last": np.array([s["is_last"] for s in steps]),
                "is_terminal": np.array([s["is_terminal"] for s in steps]),
                "meta": ep["episode_metadata"],
            }
        )
    out.sort(key=lambda e: int(e["meta"]["episode_id"]))
    return out


def _tfrecord_bytes(builder_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(builder_dir.glob("*.tfrecord*")))


def test_same_seed_writes_identical_bytes_and_other_seed_differs(sample_dir, tmp_path):
    again = Path(sw.make_sample(tmp_path / "a", episodes=EPISODES, steps=STEPS, seed=3))
    assert _tfrecord_bytes(again) == _tfrecord_bytes(sample_dir)
    assert (again / "features.json").read_text() == (sample_dir / "features.json").read_text()
    other = sw.make_episode(seed=4, index=0, steps=STEPS)
    same = sw.make_episode(seed=3, index=0, steps=STEPS)
    assert not np.array_equal(other.state, same.state)


def test_written_episode_equals_the_episode_made_on_its_own(episodes):
    # Episode i depends on (seed, i) only, not on the episodes made before it.
    alone = sw.make_episode(seed=3, index=1, steps=STEPS)
    np.testing.assert_array_equal(episodes[1]["state"], alone.state)
    np.testing.assert_array_equal(episodes[1]["depth"][..., 0], sw.depth_to_mm(alone.depth)[..., 0])
    assert episodes[1]["instruction"][0] == alone.instruction


def test_tfds_reads_back_the_listed_features(sample_dir, episodes):
    import tensorflow_datasets as tfds

    info = tfds.builder_from_directory(str(sample_dir)).info
    assert info.name == "armdata_sample" and str(info.version) == "1.0.0"
    assert info.splits["train"].num_examples == EPISODES
    feats = info.features
    obs = feats["steps"]["observation"]
    assert obs["image"].shape == (128, 160, 3) and obs["image"].dtype == np.uint8
    assert obs["depth"].shape == (128, 160, 1) and obs["depth"].dtype == np.uint16
    assert obs["state"].shape == (7,) and feats["steps"]["action"].shape == (7,)
    meta = feats["episode_metadata"]
    assert set(meta.keys()) == {"file_path", "episode_id", "gripper_uv", "gripper_visible"}
    for ep in episodes:
        assert ep["image"].shape == (STEPS, 128, 160, 3)
        assert ep["depth"].dtype == np.uint16
        assert ep["is_first"].tolist() == [True] + [False] * (STEPS - 1)
        assert ep["is_last"].tolist() == [False] * (STEPS - 1) + [True]
        assert ep["is_terminal"][-1] and not ep["is_terminal"][:-1].any()
        assert ep["meta"]["gripper_uv"].shape == (STEPS, 2)
        assert ep["meta"]["gripper_visible"].shape == (STEPS,)
        text = ep["instruction"][0]
        assert len(set(ep["instruction"])) == 1 and any(c in text for c in sw.BLOCK_COLOURS)


def test_actions_are_state_differences_and_last_action_is_still(episodes):
    for ep in episodes:
        s, a = ep["state"], ep["action"]
        np.testing.assert_array_equal(a[:-1, :6], s[1:, :6] - s[:-1, :6])
        np.testing.assert_array_equal(a[-1, :6], np.zeros(6, np.float32))
        assert a[-1, 6] == np.round(s[-1, 6])
        assert np.abs(a[:-1, :3]).sum(axis=1).max() > 0.01  # it does move


def test_gripper_closes_and_reopens_within_each_episode(episodes):
    for ep in episodes:
        g_state, g_action = ep["state"][:, 6], ep["action"][:, 6]
        assert g_state[0] == 1.0 and g_state[-1] == 1.0 and g_state.min() == 0.0
        assert set(np.unique(g_action).tolist()) == {0.0, 1.0}
        changes = np.flatnonzero(np.diff(g_action))
        assert len(changes) == 2 and g_action[changes[0]] == 1.0  # open -> closed -> open


def test_gripper_uv_is_the_projection_of_the_state_position(episodes):
    calib = sw.sample_calibration(128, 160)
    for ep in episodes:
        uv = sw.project(ep["state"][:, :3].astype(np.float64), calib)
        np.testing.assert_allclose(ep["meta"]["gripper_uv"], uv, atol=1e-3)


def test_gripper_uv_lies_on_gripper_coloured_pixels_where_visible(episodes):
    checked = 0
    for ep in episodes:
        vis = ep["meta"]["gripper_visible"]
        assert vis.mean() >= 0.9
        for t in np.flatnonzero(vis):
            u, v = np.rint(ep["meta"]["gripper_uv"][t]).astype(int)
            r, g, b = ep["image"][t, v, u].astype(float)
            # Magenta: red and blue both well above green (no block and not the table looks like that).
            assert r > 1.4 * g and b > 1.4 * g, (t, (r, g, b))
            checked += 1
    assert checked >= EPISODES * STEPS * 0.9


def test_tracked_point_is_on_the_palm_in_the_part_buffer():
    ep = sw.make_episode(seed=3, index=0, steps=STEPS)
    for t in np.flatnonzero(ep.gripper_visible):
        u, v = np.rint(ep.gripper_uv[t]).astype(int)
        assert ep.part[t, v, u] == sw.PALM_ID


def test_depth_at_gripper_uv_is_the_camera_z_of_the_end_effector(episodes):
    calib = sw.sample_calibration(128, 160)
    for ep in episodes:
        z = sw.camera_depth(ep["state"][:, :3].astype(np.float64), calib)
        for t in np.flatnonzero(ep["meta"]["gripper_visible"]):
            u, v = np.rint(ep["meta"]["gripper_uv"][t]).astype(int)
            depth_m = ep["depth"][t, v, u, 0] * 0.001
            assert abs(depth_m - z[t]) < 0.01, (t, depth_m, z[t])


def test_depth_image_is_the_table_plane_far_from_objects(episodes):
    # Bottom-left corner pixel sees the table: its depth equals the ray-plane intersection, in millimetres.
    calib = sw.sample_calibration(128, 160)
    eye, d = sw._camera_rays(calib, np.array([0.0]), np.array([127.0]))
    expected_mm = -eye[2] / d[0, 2] * 1000.0
    for ep in episodes:
        assert np.all(np.abs(ep["depth"][:, 127, 0, 0].astype(float) - expected_mm) <= 1.0)


def test_sample_is_small_on_disk(sample_dir):
    total = sum(p.stat().st_size for p in sample_dir.iterdir())
    per_step = total / (EPISODES * STEPS)
    assert per_step < 15_000
    assert per_step * 6 * 50 < 5_000_000  # the default sample, even with 50 steps, stays a few MB


@pytest.mark.parametrize("steps", [10, 40, 50])
def test_script_picks_the_block_and_puts_it_where_the_instruction_says(steps):
    calib = sw.sample_calibration(128, 160)
    layout, poses, scenes = sw.plan_episode(seed=0, index=2, steps=steps, calib=calib)
    openings = np.array([p.opening for p in poses])
    assert openings[0] == 1.0 and openings.min() == 0.0 and openings[-1] == 1.0
    picked = next(b for b in scenes[-1] if b.part_id == sw.BLOCK_ID0 + layout.pick)
    np.testing.assert_allclose(picked.center[:2], layout.place_xy, atol=1e-9)
    rest_z = sw.BLOCK_HALF + (2 * sw.BLOCK_HALF if layout.place_on is not None else 0.0)
    assert abs(picked.center[2] - rest_z) < 0.002
    assert layout.colours[layout.pick] in layout.instruction


def test_culled_render_equals_brute_force_render():
    calib = sw.sample_calibration(64, 80)
    _, _, scenes = sw.plan_episode(seed=1, index=0, steps=6, calib=calib)
    for boxes in (scenes[0], scenes[3]):
        a = sw.render(boxes, calib)
        b = sw.render(boxes, calib, cull=False)
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)
        assert np.array_equal(a.part, b.part)


def test_source_file_validates_and_carries_the_renderer_calibration():
    src = load_source(REPO / "sources" / "sample.yaml")
    assert src.data.dir == "builtin:sample" and src.cameras.depth_scale == 0.001
    calib = sw.sample_calibration(128, 160)
    assert src.calibration.intrinsics.model_dump() == calib["intrinsics"]
    np.testing.assert_array_equal(np.array(src.calibration.camera_from_base),
                                  np.array(calib["camera_from_base"]))
    assert src.state.eef_position.index == [0, 1, 2]
    assert src.action.gripper.index == 6 and src.action.gripper.open_value == 1


def test_builtin_unknown_name_lists_known_names():
    with pytest.raises(ArmdataError, match="known: sample"):
        sw.builtin_dataset_dir("builtin:nope")


def test_builtin_sample_is_made_once_and_tolerates_a_lost_race(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMDATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sw.BUILTIN_DATASETS, "sample", {"episodes": 1, "steps": 3, "seed": 0, "height": 32,
                                                         "width": 40})
    real_make = sw.make_sample
    calls = []

    def racing_make(out_dir, **kw):
        # Another process finishes the same dataset while this one is still building.
        if not calls:
            home = next(Path(out_dir).parent.glob("sample-*"), None) or Path(out_dir).parent / (
                f"sample-{sw.SAMPLE_VERSION}-{sw._params_hash(sw.BUILTIN_DATASETS['sample'])}")
            real_make(home, **kw)
        calls.append(out_dir)
        return real_make(out_dir, **kw)

    monkeypatch.setattr(sw, "make_sample", racing_make)
    first = sw.builtin_dataset_dir("builtin:sample")
    assert Path(first, "features.json").exists() and len(calls) == 1
    assert sw.builtin_dataset_dir("builtin:sample") == first and len(calls) == 1  # cached
    assert [p.name for p in (tmp_path / "cache" / "builtin").iterdir()] == [Path(first).parents[1].name]


def test_lucas_kanade_tracker_follows_the_tracked_point_within_target():
    # The sample must be trackable: a plain pyramidal LK tracker, chained frame to frame on JPEG frames from the
    # true first-frame pixel, stays within the trace fidelity target (mean error <= 3 in [0, 255] units).
    cv2 = pytest.importorskip("cv2")
    ep = sw.make_episode(seed=0, index=0, steps=40)
    h, w = ep.rgb.shape[1:3]
    gray = []
    for frame in ep.rgb:
        ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        gray.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY))
    p = ep.gripper_uv[0].reshape(1, 1, 2).astype(np.float32)
    errors = []
    for t in range(1, len(gray)):
        p, status, _ = cv2.calcOpticalFlowPyrLK(gray[t - 1], gray[t], p, None, winSize=(15, 15), maxLevel=3)
        assert status[0, 0] == 1
        err = (p[0, 0] - ep.gripper_uv[t]) * np.array([255 / (w - 1), 255 / (h - 1)])
        errors.append(np.linalg.norm(err))
    assert np.mean(errors) <= 3.0, np.mean(errors)
