"""The real CoTracker3 classes, at random initialisation, through armdata's adapter from the command line.

CoTracker3 is not on PyPI and is licensed CC-BY-NC: it is never a dependency of the tests. Where ``cotracker`` is
importable (``pip install 'armdata[cotracker]'``, or ``pip install --no-deps`` of a clone of
facebookresearch/co-tracker), this builds ``CoTrackerThreeOffline`` as ``build_cotracker`` does for the offline
predictor (stride 4, corr_radius 3, window_len 60), saves its random weights as a checkpoint, and runs
``armdata build --tracker cotracker --tracker-checkpoint`` on a tiny built-in sample; otherwise it skips.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from depth_factory import save_tiny_depth_tokenizer

from armdata.annotators.actions.tokenizer import make_test_tokenizer
from armdata.cli import main
from armdata.schemas.source import builtin_sources_dir

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cotracker") is None,
                                reason="cotracker (CoTracker3) is not installed here")


def _random_cotracker3_checkpoint(path) -> None:
    import torch
    from cotracker.models.core.cotracker.cotracker3_offline import CoTrackerThreeOffline

    torch.manual_seed(0)
    model = CoTrackerThreeOffline(stride=4, corr_radius=3, window_len=60)
    torch.save(model.state_dict(), path)


def test_build_with_real_cotracker3_classes_from_the_cli(tmp_path, capsys):
    ckpt = tmp_path / "scaled_offline.pth"
    _random_cotracker3_checkpoint(ckpt)
    assert main(["sample", "make", str(tmp_path / "data"), "--episodes", "1", "--steps", "8"]) == 0
    spec = yaml.safe_load((builtin_sources_dir() / "sample.yaml").read_text())
    spec["data"]["dir"] = str(tmp_path / "data" / "armdata_sample" / "1.0.0")
    src = tmp_path / "tiny.yaml"
    src.write_text(yaml.safe_dump(spec))
    tok = make_test_tokenizer(str(tmp_path / "tok"))
    out = tmp_path / "out"
    vae = save_tiny_depth_tokenizer(tmp_path / "vae.safetensors")
    rc = main(["build", "--source", str(src), "--out", str(out), "--tokenizer", str(tok), "--no-audit",
               "--depth-tokenizer", vae,
               "--tracker", "cotracker", "--tracker-checkpoint", str(ckpt), "--trace-mode", "track"])
    assert rc == 0, capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    tracker = run["models"]["trace"]["locators"]["projection"]["tracker"]
    assert tracker["tracker"] == "cotracker" and tracker["checkpoint"] == str(ckpt)
    assert "CC-BY-NC" in tracker["license"]
    import glob

    import webdataset as wds

    anns = [json.loads(s["json"]) for s in wds.WebDataset(sorted(glob.glob(str(out / "shards" / "*.tar"))),
                                                            shardshuffle=False)]
    assert len(anns) == 8
    # Random weights track nothing in particular, but every frame after the seed went through CoTracker3:
    # each is either its point (method "cotracker") or marked lost by its visibility.
    methods = [a["gripper"]["method"] for a in anns]
    assert methods[0] == "projection"
    assert all(m == "cotracker" or "tracker_lost" in a["flags"] for m, a in zip(methods[1:], anns[1:]))
