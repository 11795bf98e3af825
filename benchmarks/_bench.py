"""What every benchmark shares: the machine it ran on, the built-in sample as a source, and a goal line.

Each benchmark measures its figure and its baseline in the same run on the same machine and prints the ratio
beside its goal: ``GOAL <name>: <figure> (goal <op> <target>) MET|NOT MET``. The machine line says how loaded
the machine was (a shared machine's load changes absolute numbers, much less the ratios).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    """CPU model, cores usable, memory, load, torch version and, where present, the GPU."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    load = ", load %.1f/%.1f/%.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {cores} cores{mem}{load}, torch {torch.__version__}{gpu}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"


def header(title: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    print(f"== {title}")
    print(f"machine: {machine()}")


def goal(name: str, value: float, op: str, target: float, unit: str = "x", why: str = "") -> bool:
    """Print one goal line; returns whether it is met."""
    met = value >= target if op == ">=" else value <= target
    line = f"GOAL {name}: {value:.3g}{unit} (goal {op} {target:g}{unit}) {'MET' if met else 'NOT MET'}"
    print(line + (f"  [{why}]" if why else ""))
    return met


def workdir(prefix: str) -> str:
    """A fresh temporary folder, or ``$ARMDATA_BENCH_TMP`` (kept between runs: rendered samples are reused)."""
    import tempfile

    keep = os.environ.get("ARMDATA_BENCH_TMP")
    if keep:
        os.makedirs(keep, exist_ok=True)
        return keep
    return tempfile.mkdtemp(prefix=prefix)


def fresh(tmp: str, name: str) -> str:
    """A new, empty output folder under ``tmp`` (an existing job output would be resumed, not measured)."""
    import tempfile

    return tempfile.mkdtemp(dir=tmp, prefix=name + "-")


def sample_source(tmp: str, episodes: int, steps: int, height: int = 128, width: int = 160, seed: int = 0) -> str:
    """The built-in sample world as an RLDS dir plus its source file (a sample already rendered under ``tmp``
    with these settings is reused); returns the source file's path."""
    from armdata.synthetic.world import SAMPLE_NAME, SAMPLE_VERSION, make_sample

    where = os.path.join(tmp, f"data-{episodes}x{steps}-{height}x{width}-s{seed}")
    data = os.path.join(where, SAMPLE_NAME, SAMPLE_VERSION)
    if not os.path.isdir(data):
        data = make_sample(where, episodes=episodes, steps=steps, seed=seed, height=height, width=width)
    spec = yaml.safe_load((REPO / "sources" / "sample.yaml").read_text())
    spec["data"]["dir"] = data
    path = os.path.join(tmp, f"sample-{episodes}x{steps}-{height}x{width}-s{seed}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(spec, f)
    return path


def job_inputs(tmp: str, src_path: str):
    """(source, statistics, test tokenizer dir) for an annotate run on ``src_path``."""
    from armdata.annotators.actions.tokenizer import make_test_tokenizer
    from armdata.beam_jobs.stats import statistics_for
    from armdata.schemas.source import load_source

    src = load_source(src_path)
    tok = os.path.join(tmp, "tok")
    if not os.path.exists(tok):
        make_test_tokenizer(tok)
    stats = statistics_for([src], os.path.join(tmp, "stats-" + Path(src_path).stem), [], use_cache=False)
    return src, stats, tok


def base_flags(tok: str) -> dict:
    """Config flags every benchmark run names: the test action tokenizer and the demo depth tokenizer (a job on a
    real source must name its depth tokenizer)."""
    from armdata.annotators.depth.tokenizer import default_demo_tokenizer_path

    return {"actions.tokenizer": tok, "depth_tokenizer.checkpoint": default_demo_tokenizer_path()}


def random_depth_model(tmp: str, arch: str = "small") -> str:
    """Depth Anything V2 of the real architecture at random weights, saved as a released one is."""
    from armdata.annotators.depth.random_init import save_random_depth_anything

    out = os.path.join(tmp, f"da-{arch}")
    if not os.path.exists(out):
        save_random_depth_anything(out, arch)
    return out


def run_child(code: str, *args: str) -> dict:
    """Run ``code`` (Python that prints one JSON line last) in a fresh process and return that JSON. A fresh
    process per measurement: peak RSS is per process and never goes down."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "benchmarks"),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB: VmHWM of /proc/self/status (Linux). Not getrusage's
    ru_maxrss, which after fork + exec still holds the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
