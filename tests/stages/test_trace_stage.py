"""The trace stage's modes over one episode, the keyframe schedule, flags, and the evaluation against ground
truth; plus the must-show on the built-in sample world (track + the default tracker seeded by projection, mean error <= 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from armdata.annotators.locate import LocateResult
from armdata.annotators.trace import NO_TRACE_FLAG
from armdata.pipeline.audit.trace_eval import StandInPointerFromGroundTruth, evaluate_traces, ground_truth, summarize
from armdata.pipeline.stages.trace import (
    FLAG_DISAGREE,
    FLAG_DRIFT,
    FLAG_LOST,
    FLAG_NO_SEED,
    EpisodePoints,
    TraceAnnotator,
    TraceConfig,
    keyframes,
)
from trace_factory import look_at_calibration, make_episode, make_source, moving_patch_video, smooth_path

H, W, F = 128, 160, 200.0


def _episode(steps: int = 30, seed: int = 0, gone_after: int | None = None):
    """A moving textured patch with matching ground truth and EEF states under look_at_calibration."""
    gt = smooth_path(steps, H, W, seed=seed, margin=0.3)
    frames = moving_patch_video(gt, H, W, patch=24, seed=seed)
    vis = np.ones(steps, bool)
    if gone_after is not None:
        frames[gone_after:] = moving_patch_video(np.full((1, 2), -100.0), H, W, patch=24, seed=seed)[0]
        vis[gone_after:] = False
    # Back-project the path at depth 1 m: camera x = -base y, camera y = -base z (see look_at_calibration).
    cx, cy = (W - 1) / 2, (H - 1) / 2
    eef = np.stack([np.zeros(steps), -(gt[:, 0] - cx) / F, -(gt[:, 1] - cy) / F], 1)
    ep = make_episode(frames, eef, metadata={"gripper_uv": gt.astype(np.float32), "gripper_visible": vis})
    return ep, gt


def _source(**kw):
    return make_source(calibration=look_at_calibration(H, W, f=F), **kw)


def test_keyframes_are_spread_from_first_to_last_frame():
    assert keyframes(0, 10) == []
    assert keyframes(1, 10) == [0]
    assert keyframes(5, 10) == [0, 4]
    assert keyframes(50, 10) == [0, 12, 24, 37, 49]
    ks = keyframes(100, 7)
    assert ks[0] == 0 and ks[-1] == 99 and len(ks) == math.ceil(100 / 7)


def test_track_mode_with_projection_seed_follows_the_patch():
    ep, gt = _episode()
    pts = TraceAnnotator(TraceConfig(mode="track", locator="projection", gripper_size_m=24 / F)).annotate(ep, _source())
    assert isinstance(pts, EpisodePoints) and pts.points_uv.dtype == np.float32
    assert pts.visible.all() and pts.pointer_calls == 0
    assert np.abs(pts.points_uv - gt).max() < 0.5
    assert pts.method[0] == "projection" and set(pts.method[1:]) == {"hybrid"}
    assert pts.provenance["seed_frame"] == 0 and pts.provenance["tracker"]["tracker"] == "hybrid"
    assert (np.diff(pts.confidence[1:]) <= 0).all()  # confidence decays away from the anchor


def test_track_mode_with_hint_seed():
    ep, gt = _episode(seed=2)
    src = make_source(hint={"pixel": [float(gt[0, 0]), float(gt[0, 1])]})
    pts = TraceAnnotator(TraceConfig(mode="track", locator="hint")).annotate(ep, src)
    assert pts.visible.all() and np.abs(pts.points_uv - gt).max() < 0.5


def test_track_mode_marks_frames_after_the_gripper_leaves_as_lost_and_gives_them_no_trace():
    ep, gt = _episode(gone_after=20)
    pts = TraceAnnotator(TraceConfig(mode="track", locator="projection")).annotate(ep, _source())
    assert pts.visible[:20].all() and not pts.visible[21:].any()
    assert all(FLAG_LOST in f for f in pts.flags[21:])
    assert np.isnan(pts.points_uv[21:]).all()
    traces, flags = pts.traces(H, W)
    assert traces[21:] == [None] * 9 and all(NO_TRACE_FLAG in f for f in flags[21:])
    assert traces[0] is not None and len(traces[0]) == 5


class _Nowhere:
    name = "pointer"

    def __init__(self):
        self.calls = 0

    def setup(self):
        pass

    def locate(self, episode, source, frame_indices):
        self.calls += len(list(frame_indices))
        return [LocateResult.not_found("pointer", "no_point") for _ in frame_indices]


def test_no_seed_anywhere_gives_no_points_and_no_traces():
    ep, _ = _episode(steps=12)
    for mode in ("track", "point-keyframes"):
        pts = TraceAnnotator(TraceConfig(mode=mode, locator="pointer", pointer_model="x"), locator=_Nowhere()).annotate(
            ep, _source()
        )
        assert not pts.visible.any() and np.isnan(pts.points_uv).all()
        assert all(any(f.startswith(("locator_not_found", FLAG_NO_SEED)) for f in fl) for fl in pts.flags)
        assert pts.traces(H, W)[0] == [None] * 12


def test_point_every_frame_calls_the_pointer_on_every_frame():
    ep, gt = _episode(steps=20)
    pointer = StandInPointerFromGroundTruth(noise_px=0.0)
    cfg = TraceConfig(mode="point-every-frame", locator="pointer", pointer_model="x")
    pts = TraceAnnotator(cfg, locator=pointer).annotate(ep, _source())
    assert pts.pointer_calls == 20 and pts.visible.all()
    np.testing.assert_allclose(pts.points_uv, gt, atol=1e-4)


def test_point_keyframes_calls_ten_times_less_on_50_steps_and_stays_accurate():
    ep, gt = _episode(steps=50, seed=3)
    cfg = TraceConfig(mode="point-keyframes", locator="pointer", pointer_model="x", keyframe_every=10)
    pts = TraceAnnotator(cfg, locator=StandInPointerFromGroundTruth(noise_px=0.5, seed=1)).annotate(ep, _source())
    assert pts.pointer_calls == 5 and pts.provenance["keyframes"] == [0, 12, 24, 37, 49]
    assert pts.visible.all()
    assert np.linalg.norm(pts.points_uv - gt, axis=1).mean() < 1.5
    assert not any(FLAG_DISAGREE in f for f in pts.flags)


class _Outlier(StandInPointerFromGroundTruth):
    """The stand-in pointer, wrong by 30 px on frame 24."""

    def locate(self, episode, source, frame_indices):
        out = super().locate(episode, source, frame_indices)
        return [LocateResult((r.uv[0] + 30.0, r.uv[1]), r.confidence, r.method) if i == 24 else r
                for i, r in zip(frame_indices, out)]


def test_point_keyframes_flags_a_keyframe_where_pointer_and_tracker_disagree():
    ep, gt = _episode(steps=50, seed=3)
    cfg = TraceConfig(mode="point-keyframes", locator="pointer", pointer_model="x", disagreement_px=6.0)
    pts = TraceAnnotator(cfg, locator=_Outlier(noise_px=0.0)).annotate(ep, _source())
    assert FLAG_DISAGREE in pts.flags[24]
    assert pts.provenance["disagreements"][24] == pytest.approx(30.0, abs=1.0)
    assert [i for i, f in enumerate(pts.flags) if FLAG_DISAGREE in f] == [24]


def test_config_rejects_unknown_mode_and_pointer_without_model():
    with pytest.raises(ValueError, match="known: point-every-frame, track, point-keyframes"):
        TraceConfig(mode="every")
    with pytest.raises(ValueError, match="pointer_model"):
        TraceConfig(locator="pointer")


def test_evaluate_traces_perfect_points_have_only_rounding_error():
    gt = smooth_path(30, H, W, seed=1)
    vis = np.ones(30, bool)
    r = evaluate_traces(gt, vis, gt, vis, H, W)
    assert r["mean"] == 0.0 and r["missing_traces"] == 0 and r["steps_with_trace"] == 30
    shifted = gt + np.array([(W - 1) / 255 * 3, 0.0])  # exactly 3 units right
    r = evaluate_traces(shifted, vis, gt, vis, H, W)
    assert r["mean"] == pytest.approx(3.0, abs=1.0)


def test_evaluate_traces_counts_missing_traces_and_false_points():
    gt = smooth_path(10, H, W, seed=1)
    vis = np.ones(10, bool)
    pred_vis = vis.copy()
    pred_vis[7:] = False
    gt_vis = vis.copy()
    gt_vis[3] = False
    r = evaluate_traces(gt, pred_vis, gt, gt_vis, H, W)
    assert r["missing_traces"] == 3
    assert r["false_points"] > 0
    pooled = summarize([r["errors"], np.array([1.0, 2.0])])
    assert pooled["n"] == r["n"] + 2


def test_sample_world_track_lk_projection_trace_error_is_small():
    """The must-show on the built-in sample's renderer: track + the default tracker seeded by projection, mean <= 3 in [0, 255]."""
    from armdata.synthetic import world as sw
    from armdata.schemas.source import resolve_source

    src = resolve_source("sample")
    errs = []
    ann = TraceAnnotator(TraceConfig(mode="track", locator="projection"))
    for index in range(2):
        s = sw.make_episode(0, index, steps=40)
        ep = make_episode(s.rgb, s.state[:, :3], {"gripper_uv": s.gripper_uv, "gripper_visible": s.gripper_visible},
                          key=f"ep{index}")
        pts = ann.annotate(ep, src)
        gt_uv, gt_vis = ground_truth(ep)
        errs.append(evaluate_traces(pts.points_uv, pts.visible, gt_uv, gt_vis, *ep.image_size)["errors"])
    pooled = summarize(errs)
    assert pooled["n"] > 300
    assert pooled["mean"] <= 3.0, pooled


# -- the keyframe rule on a differently drawn robot: evidence decides between located points and tracks -----------


def _drawn(seed: int):
    from trace_factory import drawn_robot_episode

    frames, gt, _ = drawn_robot_episode(seed=seed)
    ep = make_episode(frames, metadata={"gripper_uv": gt.astype(np.float32), "gripper_visible": np.ones(len(gt), bool)})
    return ep, gt


def test_point_keyframes_keeps_located_points_where_the_tracker_drifted():
    """LK drifts on this robot (it was seen 8 px off on a keyframe a correct pointer found): the located points win,
    every keyframe keeps its point, nothing is flagged as the pointer's mistake."""
    disputes = 0
    for seed in range(4):
        ep, gt = _drawn(seed)
        cfg = TraceConfig(mode="point-keyframes", locator="pointer", pointer_model="x", tracker="lk")
        pts = TraceAnnotator(cfg, locator=StandInPointerFromGroundTruth(noise_px=0.0)).annotate(ep, make_source())
        keys = pts.provenance["keyframes"]
        assert pts.provenance["anchors"] == keys
        assert not any(FLAG_DISAGREE in f for f in pts.flags)
        assert np.linalg.norm(pts.points_uv[keys] - gt[keys], axis=1).max() <= 3.0  # averaged only with agreeing tracks
        for k, d in pts.provenance["disputes"].items():
            disputes += 1
            assert d["decision"] == "located" and d["tracker_off_px"] > cfg.disagreement_px
            assert FLAG_DRIFT in pts.flags[k]
    assert disputes >= 1  # the tracker did drift somewhere: the rule was exercised


class _OutlierAt24(StandInPointerFromGroundTruth):
    """The stand-in pointer, right everywhere except keyframe 24, where it answers 30 px to the right."""

    def locate(self, episode, source, frame_indices):
        out = super().locate(episode, source, frame_indices)
        return [LocateResult((r.uv[0] + 30.0, r.uv[1]), r.confidence, r.method) if i == 24 else r
                for i, r in zip(frame_indices, out)]


@pytest.mark.parametrize("seed", [1, 2])  # episodes where the default tracker's segment tracks are reliable
def test_point_keyframes_drops_an_outlying_located_point_when_reliable_tracks_disagree(seed):
    ep, gt = _drawn(seed)
    cfg = TraceConfig(mode="point-keyframes", locator="pointer", pointer_model="x")  # the default tracker
    pts = TraceAnnotator(cfg, locator=_OutlierAt24(noise_px=0.0)).annotate(ep, make_source())
    d = pts.provenance["disputes"]
    assert d[24]["decision"] == "tracker" and d[24]["located_off_px"] == pytest.approx(30.0, abs=4.0)
    assert all(e <= cfg.disagreement_px for e in d[24]["round_trip_px"].values())
    assert [i for i, f in enumerate(pts.flags) if FLAG_DISAGREE in f] == [24]
    assert pts.provenance["anchors"] == [0, 12, 37, 49]
    # Its neighbours' tracks from the wrong point missed them, but 12 is corroborated from the other side: kept.
    assert d[12]["decision"] == "located" and d[37]["decision"] == "located"
    # The wrong located point is gone: frame 24 has the tracks' point, or none where they disagree.
    assert not pts.visible[24] or np.linalg.norm(pts.points_uv[24] - gt[24]) <= 5.0
    ok = pts.visible
    assert ok.mean() >= 0.5 and np.linalg.norm(pts.points_uv[ok] - gt[ok], axis=1).mean() <= 3.0
