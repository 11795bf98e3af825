"""The OWLv2 detector locator on a tiny randomly initialised OWLv2 of the real architecture, loaded through the
real path (AutoProcessor + Owlv2ForObjectDetection.from_pretrained), alone and from `armdata locate`."""

from __future__ import annotations

import numpy as np

import fit_factory
from armdata.annotators.locate import LOCATORS
from armdata.annotators.locate.points import parse_points
from armdata.cli import main
from rlds_factory import write_source


def test_detector_answers_once_per_frame_with_box_centres_inside_the_image(tmp_path):
    model = fit_factory.save_tiny_owlv2(tmp_path / "owl")
    det = LOCATORS.create("detector", model=str(model), threshold=0.0, batch_size=3)
    det.setup()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, fit_factory.H, fit_factory.W, 3), dtype=np.uint8)
    res = det.locate_frames(frames)
    assert len(res) == 5 and det.calls == 5
    for r in res:
        assert r.method == "detector"
        if r.found:
            u, v = r.uv
            assert 0 <= u <= fit_factory.W - 1 and 0 <= v <= fit_factory.H - 1 and 0 <= r.confidence <= 1
        else:
            assert r.reason in ("no_box", "box_outside_image")
    strict = LOCATORS.create("detector", model=str(model), threshold=1.1)
    strict.setup()
    assert not any(r.found for r in strict.locate_frames(frames[:2]))


def test_armdata_locate_with_the_detector_writes_a_points_table(tmp_path, capsys):
    cell = fit_factory.robot_cell(tmp_path / "data", num_episodes=3, steps=12)
    src = write_source(tmp_path, cell.source)
    model = fit_factory.save_tiny_owlv2(tmp_path / "owl")
    out = tmp_path / "points.parquet"
    assert main(["locate", "--source", str(src), "--out", str(out), "--locator", "detector", "--set",
                 f"trace.pointer_model={model}", "--frames-per-episode", "2", "--max-frames", "4"]) == 0
    printed = capsys.readouterr().out
    assert "of 4 frames from 2 episodes (4 model calls)" in printed
    table = parse_points(out.read_bytes(), out.name)
    assert table.dropped == 0
    assert all(r.episode in cell.file_paths and r.method == "detector" for r in table.rows)
    assert all(r.image_width == fit_factory.W and r.image_height == fit_factory.H for r in table.rows)
