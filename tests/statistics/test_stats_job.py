"""The statistics Beam job: exact against numpy on the real Bridge sample (one process and two worker
processes), the layout OpenVLA/MolmoAct read, the cache, and bad input."""

from __future__ import annotations

import json
import shutil

import apache_beam as beam
import numpy as np
import pytest
import rlds_factory
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from armdata.annotators.actions.normalize import ActionStats, decode, encode
from armdata.beam_jobs import stats as stats_job
from armdata.beam_jobs.common import TooManyFailures
from armdata.beam_jobs.stats import ComputeStatistics, StatisticsError, statistics_for
from armdata.pipeline.sources.rlds import read_episodes
from armdata.pipeline.sources.standardize import standardize
from armdata.pipeline.statistics.actions import StatsSettings
from armdata.schemas.records import StandardEpisode
from armdata.schemas.source import load_source, resolve_source

FNAPI = ["--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner"]


@pytest.fixture(scope="module")
def bridge_source(bridge_debug_dir):
    return resolve_source("bridge_debug")


@pytest.fixture(scope="module")
def bridge_canonical(bridge_source):
    eps = [standardize(e, bridge_source) for e in read_episodes(bridge_source)]
    return (np.concatenate([e.actions for e in eps]).astype(np.float64),
            np.concatenate([e.proprio for e in eps]).astype(np.float64), len(eps))


def _assert_equals_numpy(entry: dict, actions: np.ndarray, proprio: np.ndarray, n_eps: int) -> None:
    for block, x in (("action", actions), ("proprio", proprio)):
        ref = {"mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0),
               "q01": np.quantile(x, 0.01, axis=0), "q99": np.quantile(x, 0.99, axis=0)}
        for k, v in ref.items():
            np.testing.assert_allclose(entry[block][k], v, rtol=0, atol=1e-6, err_msg=f"{block}.{k}")
    assert entry["num_transitions"] == actions.shape[0]
    assert entry["num_trajectories"] == n_eps


def test_bridge_statistics_equal_numpy_in_one_process(tmp_path, bridge_source, bridge_canonical):
    out = statistics_for([bridge_source], str(tmp_path / "out"), FNAPI, cache_dir=str(tmp_path / "cache"))
    _assert_equals_numpy(out["bridge_debug"], *bridge_canonical)
    assert json.loads((tmp_path / "out" / "dataset_statistics.json").read_text()) == out
    assert (tmp_path / "out" / "failures.jsonl").read_text() == ""


def test_bridge_statistics_equal_numpy_with_two_worker_processes(tmp_path, bridge_source, bridge_canonical):
    args = FNAPI + ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    out = statistics_for([bridge_source], str(tmp_path / "out"), args, use_cache=False)
    _assert_equals_numpy(out["bridge_debug"], *bridge_canonical)


def test_statistics_file_reads_as_openvla_and_molmoact_look_it_up(tmp_path, bridge_source, bridge_canonical):
    statistics_for([bridge_source], str(tmp_path), FNAPI, cache_dir=str(tmp_path / "cache"))
    norm_stats = json.loads((tmp_path / "dataset_statistics.json").read_text())
    # OpenVLA's unnorm_key lookup: norm_stats[unnorm_key]["action"] with q01/q99/mask lists.
    unnorm_key = "bridge_debug"
    assert unnorm_key in norm_stats and list(norm_stats) == [unnorm_key]
    action_stats = norm_stats[unnorm_key]["action"]
    q01, q99 = np.array(action_stats["q01"]), np.array(action_stats["q99"])
    mask = np.array(action_stats.get("mask", np.ones_like(q01, dtype=bool)))
    assert q01.shape == q99.shape == mask.shape == (7,) and mask.dtype == bool
    assert len(norm_stats[unnorm_key]["action"]["q01"]) == 7  # MolmoAct's get_action_dim
    assert set(norm_stats[unnorm_key]["proprio"]) == {"mean", "std", "max", "min", "q01", "q99"}
    # OpenVLA's unnormalization of a normalized action, against ours through encode/decode.
    actions = bridge_canonical[0][:20]
    stats = ActionStats.from_json(norm_stats[unnorm_key])
    ids = encode(actions, stats, 151643)[1]
    ours = decode(ids, stats, 151643)
    normalized = np.clip(2 * (actions - q01) / (q99 - q01) - 1, -1, 1)
    normalized[:, ~mask] = np.clip(actions[:, ~mask], -1, 1)
    theirs = np.where(mask, 0.5 * (normalized + 1) * (q99 - q01) + q01, normalized)
    np.testing.assert_allclose(ours, theirs, atol=np.max(q99 - q01) / 255 + 1e-9)


def test_unchanged_source_comes_from_the_cache_and_a_changed_one_is_recomputed(tmp_path, bridge_debug_dir,
                                                                             monkeypatch):
    src_path = tmp_path / "bridge_debug.yaml"
    shutil.copy(resolve_source("bridge_debug").origin, src_path)
    text = src_path.read_text().replace("../../shared/data/rlds/bridge_debug/1.0.0", str(bridge_debug_dir))
    src_path.write_text(text)
    cache = str(tmp_path / "cache")
    first = statistics_for([load_source(src_path)], str(tmp_path / "a"), FNAPI, cache_dir=cache)

    def refuse(*a, **k):
        raise AssertionError("recomputed although nothing changed")

    monkeypatch.setattr(stats_job, "_run_statistics_job", refuse)
    assert statistics_for([load_source(src_path)], str(tmp_path / "b"), FNAPI, cache_dir=cache) == first

    # Flip the gripper convention: the numbers change, so the cache must not answer.
    src_path.write_text(text.replace("open_value: 1.0", "open_value: 0.0").replace("closed_value: 0.0",
                                                                                  "closed_value: 1.0"))
    with pytest.raises(AssertionError, match="recomputed"):
        statistics_for([load_source(src_path)], str(tmp_path / "c"), FNAPI, cache_dir=cache)
    monkeypatch.undo()
    flipped = statistics_for([load_source(src_path)], str(tmp_path / "c"), FNAPI, cache_dir=cache)
    np.testing.assert_allclose(flipped["bridge_debug"]["action"]["mean"][6],
                               1 - first["bridge_debug"]["action"]["mean"][6], atol=1e-9)


def test_nan_action_is_a_listed_failure_and_the_job_fails_only_past_the_fraction(tmp_path):
    ds = rlds_factory.bridge_like(tmp_path / "data", num_episodes=4, num_steps=5, nan_action_at=(1, 3),
                                  black_camera=False)
    src = load_source(rlds_factory.write_source(tmp_path, ds.source))
    out = statistics_for([src], str(tmp_path / "ok"), FNAPI, use_cache=False, max_failure_fraction=0.5)
    fails = [json.loads(x) for x in (tmp_path / "ok" / "failures.jsonl").read_text().splitlines()]
    assert len(fails) == 1
    f = fails[0]
    assert f["kind"] == "non_finite_action" and f["step"] == 3 and "2" in f["field"]
    assert f["source"] == "bridge_like" and f["episode"]
    good = np.concatenate([e.expected_actions for i, e in enumerate(ds.episodes) if i != 1]).astype(np.float64)
    np.testing.assert_allclose(out["bridge_like"]["action"]["q99"], np.quantile(good, 0.99, axis=0), atol=1e-6)
    assert out["bridge_like"]["num_trajectories"] == 3

    with pytest.raises(TooManyFailures):
        statistics_for([src], str(tmp_path / "strict"), FNAPI, use_cache=False)
    assert len((tmp_path / "strict" / "failures.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "strict" / "dataset_statistics.json").exists()


def test_action_width_that_does_not_match_the_source_file_is_named(tmp_path):
    ds = rlds_factory.bridge_like(tmp_path / "data", num_episodes=2, num_steps=3, black_camera=False)
    src = load_source(rlds_factory.write_source(
        tmp_path, rlds_factory.with_changes(ds.source, {"action.raw_width": {"action": 8}})))
    with pytest.raises(TooManyFailures, match="stopped early"):
        statistics_for([src], str(tmp_path / "out"), FNAPI, use_cache=False)
    # The budget (1% of 2 episodes: none may fail) is spent by the first bad episode: the job stops there.
    fails = [json.loads(x) for x in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert len(fails) == 1 and all(f["kind"] == "wrong_width" and f["field"] == "action" for f in fails)


def test_dataset_with_fewer_than_two_transitions_is_a_clear_error(tmp_path):
    ds = rlds_factory.bridge_like(tmp_path / "data", num_episodes=1, num_steps=1, black_camera=False)
    src = load_source(rlds_factory.write_source(tmp_path, ds.source))
    with pytest.raises(StatisticsError, match="bridge_like.*1 valid transitions"):
        statistics_for([src], str(tmp_path / "out"), FNAPI, use_cache=False)
    fails = [json.loads(x) for x in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert fails[0]["kind"] == "too_few_transitions" and fails[0]["source"] == "bridge_like"


def _episode(source: str, key: str, actions: np.ndarray, proprio: np.ndarray | None) -> StandardEpisode:
    t = actions.shape[0]
    return StandardEpisode(source=source, episode_key=key, actions=actions.astype(np.float32),
                           primary=np.zeros((t, 2, 2, 3), np.uint8), instruction="x", proprio=proprio)


def test_compute_statistics_transform_keeps_datasets_apart_and_routes_nan_proprio():
    rng = np.random.default_rng(7)
    eps = [_episode("a", f"e{i}", rng.normal(size=(4, 7)), rng.normal(size=(4, 2)).astype(np.float32))
           for i in range(3)]
    eps += [_episode("b", f"e{i}", rng.normal(size=(3, 7)), None) for i in range(2)]
    bad_p = rng.normal(size=(4, 2)).astype(np.float32)
    bad_p[2, 1] = np.nan
    eps.append(_episode("a", "bad", rng.normal(size=(4, 7)), bad_p))
    a = np.concatenate([e.actions for e in eps[:3]]).astype(np.float64)
    b = np.concatenate([e.actions for e in eps[3:5]]).astype(np.float64)
    with test_pipeline.TestPipeline(runner="apache_beam.runners.portability.fn_api_runner.FnApiRunner") as p:
        out = p | beam.Create(eps) | ComputeStatistics(StatsSettings())
        summary = out["statistics"] | beam.MapTuple(
            lambda name, e: (name, e["num_trajectories"], "proprio" in e, round(e["action"]["q01"][0], 9)))
        assert_that(summary, equal_to([("a", 3, True, round(np.quantile(a[:, 0], 0.01), 9)),
                                       ("b", 2, False, round(np.quantile(b[:, 0], 0.01), 9))]), label="stats")
        kinds = out["failures"] | beam.Map(lambda d: (d["source"], d["episode"], d["step"], d["field"], d["kind"]))
        assert_that(kinds, equal_to([("a", "bad", 2, "proprio[1]", "non_finite_proprio")]), label="failures")
