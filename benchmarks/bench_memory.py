"""Benchmark 4, memory: a worker's peak RSS for 100-step and 1,000-step episodes.

Each measurement runs the annotate job (depth camera, projection, LK; Beam's in-process runner, so the process is
the worker) in a fresh process on episodes of one length, and reads that process's peak resident set size. A
worker holds whole episodes (no image crosses a shuffle), so what grows with length is what an episode holds:
its frames and what the stages make from them.

    python benchmarks/bench_memory.py [--episodes 2] [--short 100 --long 1000]

Goal: peak RSS with 1,000-step episodes <= 1.3 x with 100-step episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import workdir, goal, header, job_inputs, run_child, sample_source  # noqa: E402

CHILD = """
import json, os, sys, time
from _bench import base_flags, fresh, peak_rss_mib
from armdata.beam_jobs.annotate import annotate_sources
from armdata.pipeline.stages.config import load_config
from armdata.schemas.source import load_source
tmp, src_path, stats_path, tok = sys.argv[1:5]
src = load_source(src_path)
with open(stats_path) as f:
    stats = json.load(f)
before = peak_rss_mib()
cfg = load_config(None, None, **{**base_flags(tok), "output.episodes_per_shard": 1})
t0 = time.perf_counter()
res = annotate_sources([src], fresh(tmp, "out"), cfg, stats, [])
print(json.dumps({"peak_mib": peak_rss_mib(), "before_job_mib": before, "samples": res.samples,
                  "seconds": time.perf_counter() - t0}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--short", type=int, default=100)
    ap.add_argument("--long", type=int, default=1000)
    args = ap.parse_args(argv)
    header("benchmark 4: peak RSS of a worker, short vs long episodes")

    tmp = workdir("bench-memory-")
    out = {}
    for steps in (args.short, args.long):
        path = sample_source(tmp, args.episodes, steps)
        _, stats, tok = job_inputs(tmp, path)  # statistics and tokenizer made here, not in the measured process
        stats_path = os.path.join(tmp, f"stats-{steps}.json")
        with open(stats_path, "w") as f:
            json.dump(stats, f)
        out[steps] = run_child(CHILD, tmp, path, stats_path, tok)
        assert out[steps]["samples"] == args.episodes * steps, out[steps]

    print(f"data: built-in sample, {args.episodes} episodes of 128x160 frames, depth camera + projection + LK, "
          "in-process runner (the process is the worker)")
    for steps, r in out.items():
        print(f"{steps:>5}-step episodes: peak RSS {r['peak_mib']:.0f} MiB (before the job {r['before_job_mib']:.0f} "
              f"MiB; job {r['seconds']:.1f} s)")
    goal(f"peak RSS {args.long}-step / {args.short}-step episodes", out[args.long]["peak_mib"] /
         out[args.short]["peak_mib"], "<=", 1.3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
