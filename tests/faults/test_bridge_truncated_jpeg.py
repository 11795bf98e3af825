"""The real Bridge sample (25 episodes x 10 steps, JPEG cameras) with one stored JPEG cut short: `armdata build`
writes the other 24 episodes exactly once and one dead letter naming the episode, the step and the camera."""

from __future__ import annotations

import glob
import json
import shutil
import stat
from pathlib import Path

import yaml

import inject
from faultkit import models, private_cache, run_cli  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]
BAD_EPISODE, BAD_STEP, CAMERA = 7, 4, "observation/image_0"


def test_bridge_with_one_truncated_jpeg_writes_every_other_episode(bridge_debug_dir, tmp_path, models):
    import webdataset as wds

    data = tmp_path / "bridge_debug" / "1.0.0"
    shutil.copytree(bridge_debug_dir, data)
    for p in data.iterdir():  # the shared copy is read-only
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    inject.edit_episodes(data, {BAD_EPISODE: inject.truncate_jpeg(CAMERA, BAD_STEP, keep=0.5)})

    spec = yaml.safe_load((REPO / "sources" / "bridge_debug.yaml").read_text())
    spec["data"]["dir"] = str(data)
    spec["locator_hint"] = {"region": [16, 0, 48, 24]}
    src = tmp_path / "bridge_debug.yaml"
    src.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    res = run_cli(["build", "--source", str(src), "--out", str(out), "--episodes-per-shard", "8", "--no-audit"]
                  + models.args())
    assert res.rc == 0, res.err[-3000:]

    dead = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    bad_key = f"train-00000-{BAD_EPISODE:06d}"
    assert [(d["source"], d["episode"], d["step"], d["field"], d["kind"]) for d in dead] == [
        ("bridge_debug", bad_key, BAD_STEP, CAMERA, "corrupt_image")]
    assert "truncated JPEG" in dead[0]["message"]

    keys = [s["__key__"] for s in wds.WebDataset(sorted(glob.glob(str(out / "shards" / "*.tar"))),
                                                    shardshuffle=False)]
    want = sorted(f"bridge_debug__train-00000-{e:06d}__{t:05d}" for e in range(25) if e != BAD_EPISODE
                  for t in range(10))
    assert sorted(keys) == want  # every other episode, each step exactly once
