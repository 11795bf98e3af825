"""``armdata stats`` from the command line: Beam flags pass through, outputs land in --out."""

from __future__ import annotations

import json

import numpy as np
import rlds_factory

from armdata.cli import main


def test_stats_command_writes_the_statistics_file_and_an_empty_failures_file(tmp_path, capsys):
    ds = rlds_factory.bridge_like(tmp_path / "data", num_episodes=3, num_steps=[4, 5, 6], black_camera=False)
    src = rlds_factory.write_source(tmp_path, ds.source)
    out = tmp_path / "out"
    rc = main(["stats", "--source", str(src), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
               "--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner"])
    assert rc == 0
    assert "bridge_like: 3 trajectories, 15 transitions" in capsys.readouterr().out
    stats = json.loads((out / "dataset_statistics.json").read_text())
    expected = np.concatenate([e.expected_actions for e in ds.episodes]).astype(np.float64)
    np.testing.assert_allclose(stats["bridge_like"]["action"]["q01"], np.quantile(expected, 0.01, axis=0), atol=1e-6)
    assert (out / "failures.jsonl").read_text() == ""
    assert list((tmp_path / "cache").glob("bridge_like-*.json"))
