"""The real Bridge sample with a points table in ECoT's released layout: `armdata build` fits the camera and gives
traces; `armdata sources validate` warns on a source with no way to find the gripper."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import yaml

from armdata.annotators.actions.tokenizer import make_test_tokenizer
from armdata.beam_jobs.build import build
from armdata.cli import main
from armdata.pipeline.sources.rlds import read_episodes
from armdata.pipeline.sources.standardize import standardize
from armdata.pipeline.stages.config import load_config
from armdata.schemas.sample import SampleAnnotation
from armdata.schemas.source import load_source
from depth_factory import save_tiny_depth_tokenizer
from fit_factory import look_at

REPO = Path(__file__).resolve().parents[2]


def _bridge_source(tmp_path, bridge_debug_dir, **changes):
    spec = yaml.safe_load((REPO / "sources" / "bridge_debug.yaml").read_text())
    spec["data"]["dir"] = str(bridge_debug_dir)
    spec.update(changes)
    path = tmp_path / "bridge_debug.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _ecot_file(src, path, rng) -> int:
    """ECoT's embodied_features_bridge layout for the sample's episodes: {file_path: {episode_id: {"features":
    {"gripper_position": [[x, y] per step]}}}} on 256x256 frames. Bridge has no calibration, so the positions are the
    state projected through a plausible over-the-shoulder camera plus 2 px of noise (on 256 px): a stand-in for
    ECoT's detections, which cannot be downloaded here."""
    eps = [standardize(e, src) for e in read_episodes(src)]
    xyz = np.concatenate([e.eef_position for e in eps]).astype(np.float64)
    centre = xyz.mean(axis=0)
    r, t = look_at(centre + [-0.35, 0.25, 0.35], centre)
    cam = xyz @ r.T + t
    ang = np.abs(cam[:, :2] / cam[:, 2:]).max()
    f = 0.8 * 128 / ang
    out: dict = {}
    for e in eps:
        c = e.eef_position.astype(np.float64) @ r.T + t
        uv = f * c[:, :2] / c[:, 2:] + 127.5 + rng.normal(0, 2.0, (len(c), 2))
        path_, ep_id = e.source_episode_id.rsplit("#", 1)
        out.setdefault(path_, {})[ep_id] = {"metadata": {"episode_id": ep_id, "file_path": path_},
                                            "features": {"gripper_position": uv.round(1).tolist()},
                                            "reasoning": {}}
    path.write_text(json.dumps(out))
    return sum(len(e.eef_position) for e in eps)


def test_build_on_real_bridge_with_ecot_points_fits_the_camera(bridge_debug_dir, tmp_path):
    import webdataset as wds

    from armdata.annotators.depth.random_init import save_random_depth_anything

    ecot = tmp_path / "embodied_features_bridge.json"
    src_path = _bridge_source(tmp_path, bridge_debug_dir, locator_points=[str(ecot)])
    src = load_source(src_path)
    n = _ecot_file(src, ecot, np.random.default_rng(0))
    cfg = load_config(None, None, **{
        "depth.model": save_random_depth_anything(tmp_path / "tiny-da", arch="tiny", seed=0),
        "depth.input_size": 56, "depth_tokenizer.checkpoint": save_tiny_depth_tokenizer(tmp_path / "vq.safetensors"),
        "actions.tokenizer": make_test_tokenizer(tmp_path / "tok"), "output.episodes_per_shard": 8,
    })
    out = tmp_path / "out"
    build([src], str(out), cfg, [], audit=False)
    samples = [SampleAnnotation.from_json(s["json"])
               for s in wds.WebDataset(sorted(glob.glob(str(out / "shards" / "*.tar"))), shardshuffle=False)]
    assert len(samples) == 250
    with_trace = sum(a.trace_uv255 is not None for a in samples)
    assert with_trace >= 0.95 * 250 and all(a.gripper.method in ("fit", "") for a in samples)
    fit = json.loads((out / "run.json").read_text())["models"]["trace"]["fit"]["per_source"]["bridge_debug"]
    assert fit["fits_ok"] == 1 and fit["points"] == n == 250 and fit["episodes_with_points"] == 25
    assert fit["camera"]["residual_rms_px"] < 1.5  # 2 px noise on 256 px frames is 0.5 px on Bridge's 64


def test_validate_warns_when_a_source_cannot_find_the_gripper(bridge_debug_dir, tmp_path, capsys):
    path = _bridge_source(tmp_path, bridge_debug_dir)
    assert main(["sources", "validate", str(path), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "[WARN] gripper" in out and "no way to find the end effector" in out
    assert "armdata locate" in out

    path = _bridge_source(tmp_path, bridge_debug_dir, locator_points=["missing_points.jsonl"])
    assert main(["sources", "validate", str(path), "--episodes", "1"]) == 0
    assert "points table(s) not found" in capsys.readouterr().out
