"""The molmoact preset's depth path equals MolmoAct's released preprocessing, value for value.

Goldens (tests/annotators/golden/molmoact_depth*.{json,npz}) were computed by MolmoAct's own code
(allenai/molmoact ``preprocess/processors.py``: ``DepthTokens`` over AiT's ``vae/models/VQVAE.py``, and
``Depth.inference_depth_from_rgb`` over the original Depth-Anything-V2 classes' ``infer_image``), run on the CPU in a
throwaway venv outside this repository with torchvision's real ``Resize``/``ToTensor``; ``golden/make_goldens.py``
is the script. The weights are seeded recipes (tests/depth_factory.py) that the script used too; nothing from
those repositories is imported here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from armdata.annotators.depth.estimator import (
    DepthAnythingBackend,
    infer_image_size,
    minmax_u8_molmoact,
    resize_u8_pil,
)
from armdata.annotators.depth.original_checkpoint import load_original_checkpoint, original_licence
from armdata.annotators.depth.tokenizer import DepthTokenizer
from armdata.pipeline.stages.annotate import DepthCodeStage
from armdata.pipeline.stages.config import load_config
from armdata.schemas.errors import ArmdataError
from depth_factory import depth_like_maps, original_da2_state_dict, rgb_images, save_ait_pt

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = json.loads((GOLDEN_DIR / "molmoact_depth.json").read_text())
GOLDEN_MAPS = np.load(GOLDEN_DIR / "molmoact_depth_maps.npz")


@pytest.fixture(scope="module")
def vae_pt(tmp_path_factory) -> str:
    return save_ait_pt(tmp_path_factory.mktemp("vae") / "vae-final.pt", seed=0)


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory) -> str:
    """A tiny Depth-Anything-V2 in the original layout, saved as a .pth state dict like the released files."""
    path = tmp_path_factory.mktemp("da2") / "depth_anything_v2_tiny.pth"
    torch.save(original_da2_state_dict(GOLDEN["da2_tiny_keys"], seed=0), path)
    return str(path)


@pytest.fixture(scope="module")
def molmoact_backend(tiny_pth) -> DepthAnythingBackend:
    b = DepthAnythingBackend(model=tiny_pth, input_size=518, preprocess="molmoact")
    b.setup()
    return b


def test_depth_codes_of_an_ait_checkpoint_equal_molmoacts_on_every_code(vae_pt):
    stage = DepthCodeStage(load_config(None, None, **{"depth_tokenizer.checkpoint": vae_pt}))  # preset molmoact
    stage.setup(device="cpu")
    assert stage.tokenizer.input_scaling == "unit"  # ToTensor() only, as MolmoAct feeds it
    maps = np.stack([resize_u8_pil(m) for m in depth_like_maps()])  # torchvision Resize((320, 320)) on PIL
    codes = stage.tokenizer.encode(maps)
    assert codes.tolist() == GOLDEN["ait_codes"]  # 400 of 400


# sha256 of torchvision's Resize((320, 320)) of each depth_like_maps() PIL image (as uint8; its ToTensor() equals
# u8 / 255 exactly), computed with torchvision 0.28's transforms in the throwaway venv.
TORCHVISION_RESIZE_SHA256 = [
    "be4bd64767b544da1c4eeaa519aa556397b5121b9c17061e720c9fa4effb3363",
    "6da20b7f8215966552b67be171cfa9df1a85471e8fafe8537269a173e5fd12f4",
    "7d0875a5dbc0621ecd7ec2a73676327264301a54632f9e097b239a8e915d849b",
    "0978d3e537eb698b9eb78fc4c8e76342307454b1e6329f1d9d03513c64d28a40",
]


def test_resize_to_320_is_torchvisions_resize_of_the_pil_image_bit_for_bit():
    import hashlib

    import cv2

    maps = depth_like_maps()
    assert [hashlib.sha256(resize_u8_pil(m).tobytes()).hexdigest() for m in maps] == TORCHVISION_RESIZE_SHA256
    # OpenCV's bilinear (armdata's preset) is another resize: it differs on every map
    assert all(hashlib.sha256(cv2.resize(m, (320, 320), interpolation=cv2.INTER_LINEAR).tobytes()).hexdigest() != h
               for m, h in zip(maps, TORCHVISION_RESIZE_SHA256))


def test_armdata_preset_feeds_the_checkpoint_differently(vae_pt):
    """The two conventions really differ on this checkpoint (so the test above can fail)."""
    tok = DepthTokenizer.from_checkpoint(vae_pt, input_scaling="signed")
    maps = np.stack([resize_u8_pil(m) for m in depth_like_maps()])
    same = (tok.encode(maps) == np.asarray(GOLDEN["ait_codes"])).mean()
    assert same < 0.5


def test_infer_image_size_matches_depth_anythings_resize_rule():
    # Values worked out by hand from the rule (lower_bound, keep aspect, multiple of 14, round half to even).
    assert infer_image_size(56, 56) == (518, 518)
    assert infer_image_size(60, 80) == (518, 686)  # 80 * 518 / 60 = 690.7 -> 49.33 * 14 -> 686
    assert infer_image_size(90, 64) == (728, 518)  # 90 * 518 / 64 = 728.4 -> 52.03 * 14 -> 728
    assert infer_image_size(480, 640) == (518, 686)  # 690.67 -> 686
    assert infer_image_size(256, 320) == (518, 644)  # 647.5 / 14 = 46.25 -> 644


def test_uint8_depth_maps_equal_infer_image_and_molmoacts_min_max(molmoact_backend):
    agree = []
    for i, rgb in enumerate(rgb_images()):
        ours = minmax_u8_molmoact(molmoact_backend.predict_inverse_depth(rgb[None])[0])
        ref = GOLDEN_MAPS[f"map{i}"]
        assert ours.shape == ref.shape == rgb.shape[:2]
        diff = np.abs(ours.astype(int) - ref.astype(int))
        agree.append(((diff <= 1).mean(), (diff == 0).mean()))
    # Measured: every pixel equal on all three images (square and not).
    assert all(within1 >= 0.99 for within1, _ in agree), agree
    assert all(exact == 1.0 for _, exact in agree), agree


def test_depth_map_to_codes_chain_equals_molmoacts(molmoact_backend, vae_pt):
    stage = DepthCodeStage(load_config(None, None, **{"depth_tokenizer.checkpoint": vae_pt}))
    stage.setup(device="cpu")
    codes = [stage.tokenizer.encode(molmoact_backend.process_batch(rgb[None]))[0].tolist() for rgb in rgb_images()]
    assert codes == GOLDEN["chain_codes"]


def test_pth_and_the_hf_directory_of_the_same_weights_give_the_same_depth(tiny_pth, molmoact_backend, tmp_path):
    d = tmp_path / "tiny-hf"
    load_original_checkpoint(tiny_pth).save_pretrained(d)
    from armdata.annotators.depth.original_checkpoint import released_processor

    released_processor().save_pretrained(d)
    hf = DepthAnythingBackend(model=str(d), input_size=518, preprocess="molmoact")
    hf.setup()
    for rgb in rgb_images():
        np.testing.assert_array_equal(hf.process_batch(rgb[None]), molmoact_backend.process_batch(rgb[None]))


def test_pth_provenance_has_a_content_digest_and_licence(tiny_pth, molmoact_backend):
    p = molmoact_backend.provenance()
    assert p["revision"].startswith("sha256:") and p["preprocess"] == "molmoact"
    assert original_licence("/x/depth_anything_v2_vits.pth") == "Apache-2.0"
    assert original_licence("/x/depth_anything_v2_vitb.pth") == "CC-BY-NC-4.0"
    assert original_licence(tiny_pth) == "unknown"


def test_a_pth_that_is_not_depth_anything_fails_naming_the_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"pretrained.pos_embed": torch.zeros(1, 5, 8), "foo.weight": torch.zeros(2)}, path)
    with pytest.raises(ArmdataError, match="other.pth|original Depth-Anything-V2"):
        load_original_checkpoint(path)
