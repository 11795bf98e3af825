"""Points tables (JSONL, Parquet, ECoT's Bridge layout) and the robust camera fit on numbers fixed by construction."""

from __future__ import annotations

import json

import numpy as np

import fit_factory
from armdata.annotators.locate.fit import FitSettings, fit_camera, project
from armdata.annotators.locate.points import (
    PointRow,
    parse_points,
    rows_to_jsonl,
    rows_to_parquet,
)


def test_jsonl_and_parquet_round_trip_and_bad_rows_are_counted_not_fatal():
    rows = [PointRow("/logs/a.h5", 3, 10.5, 20.25, 0.8, method="pointer"), PointRow("train-00000-000001", 0, 1.0, 2.0)]
    for name, data in (("t.jsonl", rows_to_jsonl(rows)), ("t.parquet", rows_to_parquet(rows))):
        t = parse_points(data, name)
        assert t.rows == rows and t.dropped == 0
    bad = rows_to_jsonl(rows) + b'{"episode": "x", "step": -1, "u": 1, "v": 2}\nnot json\n{"episode": "x", "u": 1}\n'
    t = parse_points(bad, "t.jsonl")
    assert len(t.rows) == 2 and t.dropped == 3
    assert any("line 3" in p and "'step'" in p for p in t.problems) and any("line 4" in p for p in t.problems)


def test_ecot_layout_reads_per_episode_id_and_rescales_256_to_the_stored_size():
    # ECoT's embodied_features_bridge.json: {file_path: {episode_id: {"features": {"gripper_position": [[x, y]]}}}}
    ecot = {"/nfs/bridge/out.npy": {
        "0": {"metadata": {"episode_id": "0"}, "features": {"gripper_position": [[128, 64], [-1, -1], [255, 0]]},
              "reasoning": {"0": {"task": "t"}}},
        "1": {"features": {"gripper_position": [[0, 0]]}},
    }}
    t = parse_points(json.dumps(ecot).encode(), "embodied_features_bridge.json")
    assert len(t.rows) == 3 and t.dropped == 1  # the [-1, -1] step is no detection
    pts, problems = t.for_episode(["/nfs/bridge/out.npy", "train-00000-000000"], "0", 64, 64, 10)
    assert pts.steps.tolist() == [0, 2] and not problems
    # Pixel centres: (x + 0.5) * 64 / 256 - 0.5
    assert np.allclose(pts.uv, [[31.625, 15.625], [63.375, -0.375]])
    other, _ = t.for_episode(["/nfs/bridge/out.npy"], "1", 64, 64, 10)
    assert other.steps.tolist() == [0]


def test_points_beyond_the_episode_or_image_are_reported():
    t = parse_points(rows_to_jsonl([PointRow("e", 50, 1, 1), PointRow("e", 1, 500, 1), PointRow("e", 2, 3, 4),
                                    PointRow("e", 2, 9, 9)]), "t.jsonl")
    pts, problems = t.for_episode(["e"], None, 48, 64, 10)
    assert pts.steps.tolist() == [2] and pts.uv.tolist() == [[3, 4]] and len(problems) == 3


def _cell_points(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xyz = np.concatenate([fit_factory.eef_path(rng, 30) for _ in range(6)])
    uv, _ = fit_factory.project_true(xyz)
    idx = rng.choice(len(xyz), n, replace=False)
    return rng, xyz, uv, idx


def test_ransac_fit_flags_every_wrong_answer_and_recovers_the_camera():
    rng, xyz, uv, idx = _cell_points(40)
    obs = uv[idx] + rng.normal(0, 1.5, (40, 2))
    wrong = np.arange(40) < 6
    obs[wrong] = obs[wrong] + rng.choice([-1, 1], (6, 2)) * rng.uniform(15, 40, (6, 2))
    out = fit_camera(xyz[idx], obs, fit_factory.H, fit_factory.W)
    assert out.camera.ok and not out.inliers[wrong].any()
    pred, w = project(out.camera.p, xyz)
    assert (w > 0).all() and np.linalg.norm(pred - uv, axis=1).mean() < 1.5
    # The camera centre lies on the cell camera's line of sight (a narrow view leaves distance and focal length
    # traded against each other; the projection, which is what traces need, is pinned down).
    ray = np.array([0.40, 0.0, 0.12]) - np.array([1.02, -0.58, 0.74])
    off = np.asarray(out.camera.camera_centre) - np.array([1.02, -0.58, 0.74])
    assert np.linalg.norm(np.cross(off, ray / np.linalg.norm(ray))) < 0.05


def test_flat_positions_and_too_few_points_are_poor_fits_with_a_reason():
    rng, xyz, uv, idx = _cell_points(30)
    flat = xyz[idx].copy()
    flat[:, 2] = 0.1
    fuv, _ = fit_factory.project_true(flat)
    out = fit_camera(flat, fuv, fit_factory.H, fit_factory.W)
    assert not out.camera.ok and "flat" in out.camera.problem
    few = fit_camera(xyz[idx[:5]], uv[idx[:5]], fit_factory.H, fit_factory.W)
    assert not few.camera.ok and "at least" in few.camera.problem
    noise = fit_camera(xyz[idx], rng.uniform(0, 100, (30, 2)), fit_factory.H, fit_factory.W, FitSettings(seed=1))
    assert not noise.camera.ok
