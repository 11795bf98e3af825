"""The depth VQ-VAE: AiT checkpoint layout, loader checks, golden codes, encode/decode contracts, depth text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from armdata.annotators.depth.tokenizer import (
    MOLMOACT_VQVAE,
    AiTVQVAE,
    CheckpointError,
    DepthTokenizer,
    VQVAEConfig,
    depth_text,
    expected_state_shapes,
    load_manifest,
    parse_depth_text,
    save_checkpoint,
)
from armdata.schemas.errors import ArmdataError
from depth_factory import ait_state_dict

# Codes of _golden_input() under the seeded manifest-built checkpoint below. Regenerate only if the layout or the
# input scaling changes on purpose (then every released token changes too).
GOLDEN_CODES = [
    [
        127, 127, 123, 123, 10, 117, 117, 83, 124, 36, 127, 127, 39, 65, 65, 123, 10, 123, 123, 89,
        101, 39, 39, 65, 35, 117, 10, 123, 123, 89, 101, 39, 39, 65, 9, 123, 123, 123, 123, 89,
        101, 39, 39, 65, 9, 123, 123, 123, 123, 89, 101, 39, 39, 65, 9, 123, 123, 123, 123, 89,
        101, 39, 39, 65, 9, 123, 123, 123, 123, 89, 101, 39, 39, 65, 35, 123, 123, 123, 123, 83,
        101, 39, 39, 65, 35, 123, 123, 123, 123, 83, 101, 6, 6, 6, 6, 45, 45, 45, 83, 83,
    ],
    [
        127, 127, 127, 127, 127, 127, 127, 127, 127, 45, 127, 127, 39, 39, 39, 39, 39, 39, 65, 65,
        127, 127, 39, 39, 39, 37, 39, 39, 39, 14, 101, 127, 39, 39, 14, 10, 10, 5, 104, 45,
        101, 127, 39, 39, 10, 10, 83, 94, 39, 45, 127, 127, 39, 39, 10, 10, 10, 10, 39, 14,
        127, 127, 39, 39, 39, 45, 45, 39, 39, 14, 127, 39, 39, 39, 39, 39, 39, 39, 39, 14,
        101, 39, 39, 39, 39, 39, 39, 39, 39, 101, 101, 127, 6, 37, 37, 37, 37, 65, 65, 6,
    ],
]


def _manifest_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict built from the committed manifest alone (tests/depth_factory.py's seeded recipe)."""
    return ait_state_dict(load_manifest().items(), seed)


def _golden_input() -> np.ndarray:
    """Two fixed 320x320 maps: a left-to-right ramp and a centred disc on a dark floor."""
    x = np.linspace(0, 255, 320, dtype=np.float32)
    ramp = np.broadcast_to(x[None, :], (320, 320)).astype(np.uint8)
    yy, xx = np.mgrid[:320, :320]
    disc = np.where((yy - 160) ** 2 + (xx - 200) ** 2 < 60**2, 220, 30).astype(np.uint8)
    return np.stack([ramp, disc])


@pytest.fixture(scope="module")
def ait_pt_checkpoint(tmp_path_factory) -> str:
    """A file shaped like MolmoAct's vae-final.pt: {"weights": state_dict} with DDP's module. prefix."""
    path = tmp_path_factory.mktemp("vae") / "vae-final.pt"
    torch.save({"weights": {f"module.{k}": v for k, v in _manifest_state_dict().items()}}, path)
    return str(path)


def test_manifest_matches_the_model_it_describes():
    assert load_manifest() == expected_state_shapes(MOLMOACT_VQVAE)


def test_manifest_has_molmoact_geometry():
    m = load_manifest()
    assert m["encoder.0.weight"] == [16, 1, 4, 4]  # hidden 16, one channel
    assert m["encoder.12.weight"] == [512, 256, 1, 1]  # 1x1 conv to the 512-dim code
    assert m["_vq_vae._embedding"] == [128, 512]  # codebook 128
    assert sum(k.startswith("encoder.") and k.endswith("net.0.weight") for k in m) == 2  # 2 residual blocks
    assert MOLMOACT_VQVAE.grid == 10 and MOLMOACT_VQVAE.num_codes == 100


def test_encoder_reduces_320_to_a_10x10_grid():
    model = AiTVQVAE(VQVAEConfig(hidden_dim=2, codebook_dim=8)).eval()
    with torch.no_grad():
        z = model.encoder(torch.zeros(1, 1, 320, 320))
        out = model.decoder(z[:, :8])
    assert z.shape == (1, 8, 10, 10)
    assert out.shape == (1, 1, 320, 320)


def test_ait_layout_checkpoint_loads_and_gives_stable_codes(ait_pt_checkpoint):
    tok = DepthTokenizer.from_checkpoint(ait_pt_checkpoint)
    codes = tok.encode(_golden_input())
    assert codes.shape == (2, 100) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 128
    assert codes.tolist() == GOLDEN_CODES


def test_encode_is_deterministic_and_batch_independent(ait_pt_checkpoint):
    tok = DepthTokenizer.from_checkpoint(ait_pt_checkpoint, batch_size=1)
    maps = _golden_input()
    a = tok.encode(maps)
    b = np.concatenate([tok.encode(maps[i]) for i in range(2)])
    np.testing.assert_array_equal(a, b)


def test_decode_gives_uint8_maps_of_320(ait_pt_checkpoint):
    tok = DepthTokenizer.from_checkpoint(ait_pt_checkpoint)
    out = tok.decode(np.arange(200).reshape(2, 100) % 128)
    assert out.shape == (2, 320, 320) and out.dtype == np.uint8


def test_decode_rejects_codes_out_of_range(ait_pt_checkpoint):
    tok = DepthTokenizer.from_checkpoint(ait_pt_checkpoint)
    with pytest.raises(ValueError, match=r"\[0, 128\)"):
        tok.decode(np.full((1, 100), 128))


def test_encode_rejects_maps_that_are_not_uint8_320(ait_pt_checkpoint):
    tok = DepthTokenizer.from_checkpoint(ait_pt_checkpoint)
    with pytest.raises(ValueError, match="uint8"):
        tok.encode(np.zeros((1, 320, 320), dtype=np.float32))
    with pytest.raises(ValueError, match="320"):
        tok.encode(np.zeros((1, 256, 256), dtype=np.uint8))


def test_provenance_names_file_and_sha256(ait_pt_checkpoint):
    import hashlib

    prov = DepthTokenizer.from_checkpoint(ait_pt_checkpoint).provenance()
    assert prov["path"] == ait_pt_checkpoint
    assert prov["sha256"] == hashlib.sha256(open(ait_pt_checkpoint, "rb").read()).hexdigest()


def test_nested_model_wrapper_and_bare_state_dict_load(tmp_path):
    sd = _manifest_state_dict()
    torch.save({"model": sd}, tmp_path / "a.pt")
    torch.save({"state_dict": sd}, tmp_path / "b.pth")
    torch.save(sd, tmp_path / "c.pt")
    codes = [DepthTokenizer.from_checkpoint(tmp_path / n).encode(_golden_input()) for n in ("a.pt", "b.pth", "c.pt")]
    np.testing.assert_array_equal(codes[0], codes[1])
    np.testing.assert_array_equal(codes[0], codes[2])


def test_wrong_checkpoint_fails_listing_missing_unexpected_and_misshaped_keys(tmp_path):
    sd = _manifest_state_dict()
    del sd["decoder.14.weight"]
    sd["encoder.0.weight"] = torch.zeros(32, 1, 4, 4)
    sd["head.extra"] = torch.zeros(3)
    torch.save({"weights": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as ei:
        DepthTokenizer.from_checkpoint(tmp_path / "bad.pt")
    msg = str(ei.value)
    assert "missing keys (1): decoder.14.weight" in msg
    assert "unexpected keys (1): head.extra" in msg
    assert "encoder.0.weight [32, 1, 4, 4] != [16, 1, 4, 4]" in msg
    assert ei.value.missing == ["decoder.14.weight"]


class NotWeights:
    """Any pickled object other than tensors and containers; weights_only loading must refuse it."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"weights": NotWeights()}, tmp_path / "evil.pt")
    with pytest.raises(ArmdataError, match="weights-only"):
        DepthTokenizer.from_checkpoint(tmp_path / "evil.pt")


def test_safetensors_round_trip_keeps_config_and_codes(tmp_path):
    cfg = VQVAEConfig(hidden_dim=4, codebook_dim=16)
    torch.manual_seed(0)
    model = AiTVQVAE(cfg)
    save_checkpoint(model, tmp_path / "t.safetensors")
    tok = DepthTokenizer.from_checkpoint(tmp_path / "t.safetensors")
    assert tok.config == cfg
    ref = DepthTokenizer(model).encode(_golden_input())
    np.testing.assert_array_equal(tok.encode(_golden_input()), ref)


def test_cuda_asked_without_cuda_is_an_error(ait_pt_checkpoint):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(ArmdataError, match="CUDA"):
        DepthTokenizer.from_checkpoint(ait_pt_checkpoint, device="cuda")


def test_ema_quantizer_moves_codebook_towards_its_assignments():
    cfg = VQVAEConfig(hidden_dim=2, codebook_dim=4, num_tokens=8)
    q = AiTVQVAE(cfg)._vq_vae.train()
    torch.manual_seed(0)
    z = torch.randn(4, 4, 10, 10)
    before = q._embedding.clone()
    _, codes, loss = q(z)
    used = codes.unique()
    assert not torch.allclose(q._embedding[used], before[used])
    assert loss.item() > 0


def test_depth_text_round_trip():
    codes = np.array([0, 5, 127] + [3] * 97)
    text = depth_text(codes)
    assert text.startswith("<DEPTH_START><DEPTH_0><DEPTH_5><DEPTH_127><DEPTH_3>")
    assert text.endswith("<DEPTH_3><DEPTH_END>")
    np.testing.assert_array_equal(parse_depth_text(text), codes)


def test_depth_text_rejects_out_of_range_codes():
    with pytest.raises(ValueError):
        depth_text([128])
    with pytest.raises(ValueError):
        depth_text([-1])


def test_shipped_demo_tokenizer_loads_and_reconstructs_a_depth_like_map():
    from armdata.annotators.depth.tokenizer import default_demo_tokenizer_path

    tok = DepthTokenizer.from_checkpoint(default_demo_tokenizer_path())
    assert tok.config.num_tokens == 128 and tok.config.grid == 10
    # a floor seen obliquely (far at the top, near at the bottom) with a box on it, like the sample's maps
    floor = np.broadcast_to(np.linspace(40, 200, 320, dtype=np.float32)[:, None], (320, 320)).copy()
    floor[150:230, 100:180] = 230
    m = floor.astype(np.uint8)[None]
    codes = tok.encode(m)
    back = tok.decode(codes).astype(np.float32)
    mse = float(((back - m) ** 2).mean())
    baseline = float(((m - m.mean()) ** 2).mean())
    assert mse < 0.25 * baseline
