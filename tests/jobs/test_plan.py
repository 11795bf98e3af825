"""`armdata plan` on the real Bridge sample and on the built-in sample: the counts it prints equal the data's
(counted here with tfds itself, independently of armdata's reader), and the cost table it reads is well formed."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from armdata.cli import main
from armdata.pipeline.plan import COSTS_FILE, load_costs, pick_cost

REPO = Path(__file__).resolve().parents[2]


def _tfds_counts(builder_dir: str) -> tuple[int, int]:
    import tensorflow_datasets as tfds

    ds = tfds.builder_from_directory(builder_dir).as_dataset(split="train")
    lengths = [int(ep["steps"].reduce(0, lambda n, _: n + 1)) for ep in ds]
    return len(lengths), sum(lengths)


def _plan(capsys, source: str) -> str:
    assert main(["plan", "--source", source]) == 0
    return capsys.readouterr().out


def test_plan_on_the_bridge_sample_prints_its_counts(bridge_debug_dir, tmp_path, capsys):
    spec = yaml.safe_load((REPO / "sources" / "bridge_debug.yaml").read_text())
    spec["data"]["dir"] = str(bridge_debug_dir)
    (tmp_path / "bridge_debug.yaml").write_text(yaml.safe_dump(spec))
    out = _plan(capsys, str(tmp_path / "bridge_debug.yaml"))
    episodes, steps = _tfds_counts(str(bridge_debug_dir))
    assert (episodes, steps) == (25, 250)
    assert f"bridge_debug: {episodes} episodes, {steps} steps (exact)" in out
    for cam in ("observation/image_0", "observation/image_1", "observation/image_2"):
        assert f"frames {cam}: {steps}" in out
    assert "observation/image_3" not in out  # the padded camera the source does not use
    # A build of this sample (tests/jobs/test_cluster.py's settings) wrote 7,516,160 bytes of shards.
    per_sample = int(re.search(r"\((\d+) bytes per sample\)", out).group(1))
    assert abs(per_sample * steps - 7_516_160) / 7_516_160 < 0.05
    assert re.search(r"depth_codes\s+vqvae-molmoact\s+0\.00 h", out)
    assert re.search(r"depth\s+depth-anything-v2-base@518\s+not measured", out)


def test_plan_on_the_builtin_sample_prints_its_counts(capsys):
    from armdata.pipeline.sources.rlds import resolve_data_dir
    from armdata.schemas.source import resolve_source

    out = _plan(capsys, "sample")
    episodes, steps = _tfds_counts(resolve_data_dir(resolve_source("sample")))
    assert f"sample: {episodes} episodes, {steps} steps (exact)" in out
    assert f"frames observation/image: {steps}" in out and f"frames observation/depth: {steps}" in out
    assert re.search(r"depth\s+depth-camera\s+0\.00 h", out)  # the sample's own depth camera, no model


def test_plan_scales_from_a_sample_of_episodes_and_says_so(bridge_debug_dir, tmp_path, capsys):
    spec = yaml.safe_load((REPO / "sources" / "bridge_debug.yaml").read_text())
    spec["data"]["dir"] = str(bridge_debug_dir)
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(spec))
    assert main(["plan", "--source", str(tmp_path / "b.yaml"), "--sample", "5"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"bridge_debug: 25 episodes, (\d+) steps \(estimated from 5 of 25 episodes\)", out)
    assert m and int(m.group(1)) == 250  # every Bridge debug episode has 10 steps


def test_every_cost_row_says_how_it_was_measured():
    table = load_costs(COSTS_FILE)
    assert table["costs"]
    for row in table["costs"]:
        assert row["stage"] in {"depth", "depth_codes", "trace", "samples"}
        assert row["device"] in {"cpu", "cuda"} and float(row["seconds_per_frame"]) > 0
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date"]) and row["machine"] and row["how"]
    newer = {**table, "costs": table["costs"] + [{**table["costs"][0], "date": "2999-01-01", "seconds_per_frame": 9}]}
    assert pick_cost(newer, table["costs"][0]["stage"], table["costs"][0]["what"], "cpu")["seconds_per_frame"] == 9
