"""The audit: figures in audit.json match the output, trace error against ground truth, card sampling, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import output_factory as of
from armdata import cli
from armdata.annotators.trace import build_traces, to_uv255
from armdata.pipeline.audit.report import (
    compute_audit,
    run_audit,
    stratified_sample,
    trace_frames,
    write_episode_report,
)
from armdata.schemas.sample import AUDIT_DIR


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return of.make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def audited(tmp_path_factory, models):
    """A factory output with its report written (6 cards) and audit.json loaded."""
    root = tmp_path_factory.mktemp("audited")
    out = of.write_output(root / "out", root / "m", models=models)
    page = run_audit(out.out_dir, samples=6, seed=3)
    return out, page, json.loads((page.parent / "audit.json").read_text())


def test_summary_counts_match_the_output(audited):
    out, page, a = audited
    s = a["summary"]
    assert (s["samples"], s["episodes"], s["sources"], s["shards"]) == (30, 3, 2, 2)
    assert s["dead_letters"] == 2 and s["failures_by_kind"] == {"empty_episode": 1, "nan_action": 1}
    assert s["check_ok"] and s["check_failures"] == 0
    # every step has depth; steps with a trace (30 - 2 untraced) carry the trace templates
    assert s["templates"] == {
        "depth_only": 30,
        "reasoning": 28,
        "trace_only": 28,
        "trajectory_conditioned": 28,
    }
    assert s["flags_by_kind"]["no_trace"] == 2 and s["flags_by_kind"]["no_point"] == 3
    assert a["sources"]["srcA"]["trace"]["points_histogram"]["0"] == 2
    assert a["sources"]["srcA"]["trace"]["no_trace_share"] == pytest.approx(2 / 20)
    assert a["sources"]["srcB"]["pointer_tracker_disagree_share"] == pytest.approx(1 / 10)


def test_report_files_exist_and_reference_nothing_remote(audited):
    out, page, a = audited
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    for card in a["cards"]:
        for name in card["images"].values():
            assert (page.parent / name).stat().st_size > 100
    for src in a["sources"].values():
        for name in src["images"].values():
            assert (page.parent / name).exists()
    assert len(a["cards"]) == 6
    assert a["depth_decoded"] is True


def test_trace_error_is_zero_when_points_are_the_ground_truth(tmp_path, models):
    out = of.write_output(tmp_path / "out", tmp_path / "m", models=models, noise_px=0.0)
    a = compute_audit(out.out_dir, samples=0)
    te = a["trace_error"]
    assert te["has_ground_truth"]
    assert te["per_frame"]["n"] == 27 and te["per_frame"]["max"] < 1e-3
    # trace points are rounded to integers: at most half a unit off on each axis
    assert te["per_trace_point"]["n"] > 27 and te["per_trace_point"]["max"] <= np.hypot(0.5, 0.5) + 1e-9


def test_trace_error_reflects_gripper_noise(audited):
    out, page, a = audited
    te = a["trace_error"]
    # 1.5 px noise in a 64x48 image is ~6-8 units of [0, 255] per axis
    assert 3.0 < te["per_frame"]["mean"] < 20.0
    assert te["per_trace_point"]["n"] > te["per_frame"]["n"]


def test_trace_frames_pick_the_points_the_trace_builder_picks():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n = int(rng.integers(1, 30))
        pts = rng.uniform(0, 60, (n, 2))
        vis = rng.random(n) > 0.3
        traces = build_traces(np.where(vis[:, None], pts, np.nan), vis, 48, 64)
        uvs = [p.tolist() if v else None for p, v in zip(pts, vis)]
        for t in range(n):
            frames = trace_frames(uvs, t)
            if traces[t] is None:
                assert frames == []
            else:
                assert to_uv255(pts[frames], 48, 64).tolist() == traces[t].tolist()


def test_stratified_sample_is_seeded_and_covers_every_stratum():
    items = [(f"k{i:03d}", "a" if i % 3 else "b", ("no_trace",) if i % 10 == 0 else ()) for i in range(100)]
    first = stratified_sample(items, 8, seed=1)
    assert first == stratified_sample(items, 8, seed=1)
    assert first != stratified_sample(items, 8, seed=2)
    strata = {(src, flags) for k, src, flags in items if k in first}
    assert len(strata) == 4 and len(set(first)) == 8
    assert len(stratified_sample(items, 500, seed=0)) == 100


def test_episode_page_has_filmstrip_depth_and_actions(audited):
    out, _, _ = audited
    page = write_episode_report(out.out_dir, "srcA__ep001")
    assert page.parent.name == "episode-srcA__ep001"
    for name in ("filmstrip.png", "depth-strip.png", "actions.png", "gripper-error.png"):
        assert (page.parent / name).stat().st_size > 100
    text = page.read_text()
    assert "put the block 1 in the bowl" in text and "no_trace" in text


def test_cli_check_fails_naming_shard_key_field_and_audit_prints_path(audited, tmp_path, capsys):
    out, _, _ = audited
    copy = tmp_path / "out"
    shutil.copytree(out.out_dir, copy, ignore=shutil.ignore_patterns(AUDIT_DIR))
    assert cli.main(["check", str(copy)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = of.FactoryOutput(copy, out.keys, out.shard_of, out.episodes, out.run)
    key = out.keys[3]
    of.edit_annotation(bad, key, lambda d: d["action"]["ids"].__setitem__(0, 5))
    assert cli.main(["check", str(copy)]) == 1
    printed = capsys.readouterr().out
    assert f"shard={out.shard_of[key]} key={key} field=action.ids" in printed
    assert cli.main(["audit", str(copy), "--samples", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(copy / AUDIT_DIR / "index.html")


def test_warnings_point_at_figures_worth_a_look(audited):
    _, page, a = audited
    # 20 steps per source: q01/q99 leave the extreme step of each dimension outside, 10% > the 5% threshold
    assert "srcA: 10% of x values are clipped at +-1" in a["warnings"]
    assert not any("depth codes" in w for w in a["warnings"])  # the factory uses 80 of 128 codes
    assert "Worth a look" in page.read_text()


def test_report_on_a_damaged_output_lists_the_failures(audited, tmp_path):
    out, _, _ = audited
    copy = tmp_path / "out"
    shutil.copytree(out.out_dir, copy, ignore=shutil.ignore_patterns(AUDIT_DIR))
    bad = of.FactoryOutput(copy, out.keys, out.shard_of, out.episodes, out.run)
    k1, k2 = out.keys[0], out.keys[-1]
    of.edit_annotation(bad, k1, lambda d: d["depth_codes"].__setitem__(5, 999))
    of.rewrite_sample(bad, k2, "json", b"{not json")
    page = run_audit(copy, samples=30, seed=0)
    a = json.loads((page.parent / "audit.json").read_text())
    assert not a["summary"]["check_ok"] and a["summary"]["unreadable_samples"] == 1
    named = {(f["key"], f["field"]) for f in a["check"]["failures"]}
    assert (k1, "depth_codes") in named and (k2, "json") in named
    assert "the checker found" in a["warnings"][0]
    assert k1 in page.read_text() and len(a["cards"]) == 29


def test_episodes_are_ranked_by_trace_quality_worst_first(audited):
    out, page, a = audited
    tq = a["episodes_by_trace_quality"]
    assert tq["ranked"] == 3
    worst = tq["worst_first"]
    # srcA/ep001 lost its point on 3 of 10 frames and has no trace on 2 steps; every episode has one overruled
    # located point (step 3) and confidence 0.9 where found. Ties are ordered by key.
    assert [q["key"] for q in worst] == ["srcA__ep001", "srcA__ep000", "srcB__ep000"]
    assert worst[0]["shares"]["no_trace"] == pytest.approx(0.2) and worst[0]["shares"]["no_point"] == pytest.approx(0.3)
    assert worst[0]["badness"] == pytest.approx(0.2 + 0.5 * 0.3 + 0.1 + 0.5 * 0.1)
    assert worst[1]["badness"] == pytest.approx(0.1 + 0.5 * 0.1) and worst[1]["methods"] == {"factory": 10}
    html = page.read_text()
    table = html[html.index('id="worst-episodes"'):]
    assert table.index("srcA__ep001") < table.index("srcA__ep000") < table.index("srcB__ep000")


def test_trace_quality_counts_drift_fit_and_keeps_only_the_worst():
    from armdata.pipeline.audit.ranking import WorstEpisodes, episode_quality, step_troubles

    assert step_troubles(["tracker_drift", "fit_residual_high", "locator_not_found:no_point"]) == {
        "drift", "fit", "no_point"}
    assert step_troubles(["pointer_fit_residual", "action_clipped"]) == {"fit"}
    rng = np.random.default_rng(0)
    qs = []
    worst = WorstEpisodes(k=5)
    for i in range(60):
        steps = [([f for f in ("tracker_lost", "no_trace") if rng.random() < 0.3], "template", 0.8, True)
                 for _ in range(12)]
        q = episode_quality("s", f"ep{i:03d}", steps)
        qs.append(q)
        worst.add(q)
    expect = sorted(qs, key=lambda q: (-q.badness, q.key))[:5]
    assert [q.key for q in worst.worst_first()] == [q.key for q in expect] and worst.seen == 60
