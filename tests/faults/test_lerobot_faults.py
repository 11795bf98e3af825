"""LeRobot v3.0 sources meet the same rule: one `armdata build` over a dataset with a video file missing (the wrist
camera of episodes 2 and 3) and a timestamp with no frame (episode 1, frame 2) writes episodes 0, 4 and 5 exactly
once and one dead letter per bad episode naming its step and camera."""

from __future__ import annotations

import glob
import json

import pyarrow as pa
import pyarrow.parquet as pq

import lerobot_factory as lf
import rlds_factory
from faultkit import models, private_cache, run_cli  # noqa: F401 (fixtures)


def test_lerobot_missing_video_and_timestamp_without_frame(tmp_path, models):
    import webdataset as wds

    eps = lf.make_episodes(6, lengths=[4, 5, 4, 3, 4, 5], seed=4)
    ds = lf.write_v30(tmp_path / "lr_faults", eps, episodes_per_file=2)
    (ds.root / "videos/observation.images.wrist/chunk-000/file-001.mp4").unlink()  # episodes 2 and 3
    data = ds.root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data)
    ts = table.column("timestamp").to_numpy().copy()
    ts[4 + 2] += 10.0  # episode 1 (rows 4..8 of file-000), frame 2: past the end of its video
    pq.write_table(table.set_column(table.column_names.index("timestamp"), "timestamp", pa.array(ts, pa.float32())),
                   data)
    src = rlds_factory.write_source(tmp_path, ds.source("lrfaults", locator_hint={"region": [0, 0, 24, 24]}))

    out = tmp_path / "out"
    res = run_cli(["build", "--source", str(src), "--out", str(out), "--max-failure-fraction", "0.5",
                   "--no-audit"] + models.args())
    assert res.rc == 0, res.err[-3000:]

    dead = sorted((d["episode"], d["step"], d["field"], d["kind"])
                  for d in map(json.loads, (out / "failures.jsonl").read_text().splitlines()))
    assert [d[0] for d in dead] == ["train-00000-000001", "train-00000-000002", "train-00000-000003"]
    assert dead[0][1:] == (2, lf.CAMERAS[0], "frame_not_found")
    assert all(d[2] == lf.CAMERAS[1] and d[3] == "missing_video" for d in dead[1:])

    keys = [s["__key__"] for s in wds.WebDataset(sorted(glob.glob(str(out / "shards" / "*.tar"))),
                                                    shardshuffle=False)]
    want = sorted(f"lrfaults__train-00000-{e:06d}__{t:05d}" for e in (0, 4, 5) for t in range(eps[e].length))
    assert sorted(keys) == want
