"""Past the exact limit, the Beam job's quantiles come from the sketch and keep the rank error the file states."""

from __future__ import annotations

import numpy as np

from armdata.beam_jobs.stats import statistics_for
from armdata.pipeline.sources.rlds import read_episodes
from armdata.pipeline.sources.standardize import standardize
from armdata.pipeline.statistics.actions import StatsSettings
from armdata.schemas.source import resolve_source


def test_sketched_quantiles_stay_within_the_stated_rank_error(tmp_path, bridge_debug_dir):
    source = resolve_source("bridge_debug")
    actions = np.concatenate([standardize(e, source).actions for e in read_episodes(source)]).astype(np.float64)
    out = statistics_for([source], str(tmp_path), ["--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner"],
                         settings=StatsSettings(exact_limit=100, sketch_k=16), use_cache=False)
    entry = out["bridge_debug"]
    assert entry["armdata"]["quantiles"].startswith("sketch")
    bound = entry["armdata"]["quantile_rank_error_bound"]
    assert 0 < bound < 0.5
    n = actions.shape[0]
    for d in range(7):
        col = np.sort(actions[:, d])
        for q, key in ((0.01, "q01"), (0.99, "q99")):
            v = entry["action"][key][d]
            lo, hi = np.searchsorted(col, v, "left") / n, np.searchsorted(col, v, "right") / n
            assert lo - bound - 1 / n <= q <= hi + bound + 1 / n, (d, key)
    np.testing.assert_allclose(entry["action"]["mean"], actions.mean(0), atol=1e-9)
