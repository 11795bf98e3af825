"""kill -9 at three points of a build, then a resume that ends with the bytes of an uninterrupted build; a second
run into a folder in use is refused naming the first; a killed run's stale lock is taken over; a full and a
read-only output disk are one error line each.

Runs `armdata build` in a subprocess (the real entry point, so it can be killed) on the built-in sample world
(small: 6 episodes x 8 steps; depth from its depth camera, so no depth model).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from faultkit import models, private_cache, run_cli  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample_src(tmp_path_factory) -> Path:
    from armdata.synthetic.world import make_sample

    tmp = tmp_path_factory.mktemp("kill-sample")
    data = make_sample(tmp / "data", episodes=6, steps=8, seed=5)
    spec = yaml.safe_load((REPO / "sources" / "sample.yaml").read_text())
    spec["data"]["dir"] = data
    path = tmp / "sample.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _args(src: Path, out: Path, models) -> list[str]:
    return ["build", "--source", str(src), "--out", str(out), "--tokenizer", models.tokenizer,
            "--depth-tokenizer", models.depth_tokenizer, "--episodes-per-shard", "2", "--no-audit"]


def _manifests(out: Path) -> dict[str, dict]:
    return {Path(p).name: json.loads(Path(p).read_text()) for p in sorted(glob.glob(str(out / "shards" / "*.json")))}


def _start(args: list[str], cache: Path) -> subprocess.Popen:
    # Its own statistics cache, so the statistics step really runs (the reference run cached its numbers).
    env = {**os.environ, "PYTHONPATH": str(REPO), "ARMDATA_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "armdata.cli", *args], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> bool:
    """SIGKILL the run's whole process group as soon as `ready()`; True when it was killed (not already done)."""
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return killed


def test_kill_9_at_three_points_then_resume_gives_the_uninterrupted_output(sample_src, tmp_path, models):
    reference = tmp_path / "reference"
    assert run_cli(_args(sample_src, reference, models)).rc == 0
    out = tmp_path / "out"
    lock = out / ".armdata.lock"

    # 1. During the statistics step. While it runs, a second run into the folder is refused, naming it.
    proc = _start(_args(sample_src, out, models), tmp_path / "cache")
    assert _kill_when(proc, lambda: glob.glob(str(out / ".stats-*"))), "run 1 ended before its statistics step"
    # (the lock is still there: kill -9 gives the run no chance to remove it)
    info = json.loads(lock.read_text())
    assert info["pid"] == proc.pid and info["host"] == socket.gethostname()

    # 2. After some episodes are annotated (the stale lock of run 1 is taken over).
    proc = _start(_args(sample_src, out, models), tmp_path / "cache")
    parts = lambda: glob.glob(str(out / ".work" / "*" / "episodes" / "*.tar"))  # noqa: E731
    seen_running = False
    while not seen_running and proc.poll() is None:
        if lock.exists() and json.loads(lock.read_text() or "{}").get("pid") == proc.pid:
            seen_running = True
            second = run_cli(_args(sample_src, out, models))
            assert second.rc == 2 and f"pid {proc.pid} on host {socket.gethostname()}" in second.err, second.err
        time.sleep(0.01)
    assert _kill_when(proc, lambda: len(parts()) >= 2)
    done_before = len(parts())
    assert 2 <= done_before < 6

    # 3. While the shards are being assembled (or just after: the run may win the race).
    proc = _start(_args(sample_src, out, models), tmp_path / "cache")
    _kill_when(proc, lambda: glob.glob(str(out / "shards" / "*.tar*")))

    # Resume: finished episodes are skipped, and the output is byte for byte the uninterrupted one.
    res = run_cli(_args(sample_src, out, models))
    assert res.rc == 0, res.err[-2000:]
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["episodes_skipped"] >= done_before
    got, want = _manifests(out), _manifests(reference)
    assert {k: m["sha256"] for k, m in got.items()} == {k: m["sha256"] for k, m in want.items()}
    keys = [k for m in got.values() for k in m["keys"]]
    assert len(keys) == len(set(keys)) == 6 * 8
    assert not lock.exists()
    assert [p for p in glob.glob(str(out / "**" / "*"), recursive=True) if ".tmp-" in p] == []


def _mount_tmpfs(where: Path, size: str, readonly: bool = False) -> None:
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")


def _umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True)


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_a_full_or_read_only_output_disk_is_one_error_line(sample_src, tmp_path, models, kind):
    """A real small tmpfs (256 KiB: the samples do not fit) and a read-only one, mounted for the test."""
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "256k", readonly=kind == "read-only")
    try:
        res = run_cli(_args(sample_src, mnt / "out", models))
    finally:
        _umount(mnt)
    want = "no space left" if kind == "full" else "read-only"
    assert res.rc == 2, res.err[-2000:]
    lines = [ln for ln in res.err.splitlines() if ln.startswith("armdata build: error:")]
    assert len(lines) == 1 and want in lines[0] and "Traceback" not in res.err, res.err[-3000:]
