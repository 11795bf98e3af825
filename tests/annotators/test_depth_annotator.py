"""Depth backends: a tiny random Depth Anything V2 through the users' loading path, the depth camera, the registry."""

from __future__ import annotations

import numpy as np
import pytest

from armdata.annotators.depth.estimator import (
    DEPTH_ANYTHING_MODELS,
    DepthAnythingBackend,
    DepthCameraBackend,
    DeviceUnavailableError,
    InvalidDepthFrame,
    depth_backend_names,
    inverse_depth_to_u8_320,
    make_depth_backend,
    metric_depth_to_inverse,
    register_depth_backend,
)
from armdata.annotators.depth.random_init import save_random_depth_anything
from armdata.schemas.errors import ArmdataError


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    return save_random_depth_anything(tmp_path_factory.mktemp("da_tiny"), "tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir):
    b = make_depth_backend("depth-anything", model=tiny_model_dir, input_size=252, batch_size=4)
    b.setup()
    return b


def _frames(n: int = 3, h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_tiny_depth_anything_gives_uint8_320_maps_spanning_the_range(tiny_backend):
    maps = tiny_backend.process_batch(_frames())
    assert maps.shape == (3, 320, 320) and maps.dtype == np.uint8
    for m in maps:  # per-image min-max: every map reaches near 0 and near 255 (bilinear resize trims the ends)
        assert m.min() <= 5 and m.max() >= 230


def test_inverse_depth_keeps_the_frame_size_before_normalising(tiny_backend):
    inv = tiny_backend.predict_inverse_depth(_frames(2, 90, 160))
    assert inv.shape == (2, 90, 160) and inv.dtype == np.float32 and np.isfinite(inv).all()


def test_batch_results_equal_one_by_one_results(tiny_backend):
    frames = _frames(5)
    together = tiny_backend.process_batch(frames)
    alone = np.concatenate([tiny_backend.process_batch(frames[i : i + 1]) for i in range(5)])
    np.testing.assert_array_equal(together, alone)


def test_frames_must_be_uint8_rgb(tiny_backend):
    with pytest.raises(ValueError, match="uint8"):
        tiny_backend.process_batch(np.zeros((1, 32, 32), dtype=np.uint8))


def test_input_size_must_be_a_multiple_of_14(tiny_model_dir):
    with pytest.raises(ValueError, match="multiple of 14"):
        DepthAnythingBackend(model=tiny_model_dir, input_size=256)


def test_cuda_asked_and_absent_fails_at_setup(tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    b = make_depth_backend("depth-anything", model=tiny_model_dir, device="cuda")
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        b.setup()


def test_half_precision_on_cpu_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="CUDA"):
        DepthAnythingBackend(model=tiny_model_dir, dtype="bf16")


def test_provenance_records_backend_model_and_licence(tiny_backend, tiny_model_dir):
    p = tiny_backend.provenance()
    assert p["backend"] == "depth-anything" and p["model_id"] == tiny_model_dir
    assert p["input_size"] == 252 and p["dtype"] == "fp32" and p["license"] == "unknown"


@pytest.mark.parametrize(
    "short, hub_id, licence",
    [
        ("small", "depth-anything/Depth-Anything-V2-Small-hf", "Apache-2.0"),
        ("base", "depth-anything/Depth-Anything-V2-Base-hf", "CC-BY-NC-4.0"),
        ("large", "depth-anything/Depth-Anything-V2-Large-hf", "CC-BY-NC-4.0"),
    ],
)
def test_short_names_resolve_to_released_models_with_their_licences(short, hub_id, licence):
    b = DepthAnythingBackend(model=short)  # no download: nothing is loaded before setup()
    assert b.model_path == hub_id and b.license == licence
    assert b.provenance()["license"] == licence


def test_default_model_is_vit_b():
    assert DepthAnythingBackend().model_path == DEPTH_ANYTHING_MODELS["base"].hub_id


def test_min_max_normalisation_is_per_image():
    inv = np.stack([np.tile(np.linspace(0, 1, 40, dtype=np.float32), (30, 1)),
                    np.tile(np.linspace(100, 101, 40, dtype=np.float32), (30, 1))])
    out = inverse_depth_to_u8_320(inv)
    # same map up to float32 rounding at truncation boundaries
    assert np.abs(out[0].astype(int) - out[1]).max() <= 2
    assert out[0, :, 0].max() <= 4 and out[0, :, -1].min() >= 250  # left dark, right bright, rows alike


def test_constant_inverse_depth_maps_to_zero():
    assert not inverse_depth_to_u8_320(np.full((1, 10, 10), 3.0, np.float32)).any()


def test_depth_camera_near_is_bright_and_invalid_is_far():
    depth = np.full((1, 40, 60), 2.0, np.float32)
    depth[0, :, :20] = 0.5  # a near object on the left
    depth[0, :5, 40:] = 0.0  # no reading
    depth[0, 5:10, 40:] = np.nan  # no reading
    m = DepthCameraBackend().process_batch(depth)[0]
    assert m.shape == (320, 320)
    assert m[160, 50] == 255 and m[160, 250] == 0  # near -> 255, far -> 0
    assert m[5, 300] == 0 and m[30, 300] == 0  # missing readings -> farthest
    assert m[200, 300] == 0


def test_depth_camera_scale_converts_millimetres():
    mm = np.random.default_rng(1).integers(300, 3000, (2, 24, 32)).astype(np.uint16)
    a = DepthCameraBackend(scale=0.001).process_batch(mm)
    b = DepthCameraBackend().process_batch(mm.astype(np.float32) / 1000)
    np.testing.assert_array_equal(a, b)


def test_depth_camera_frame_without_readings_names_its_index():
    depth = np.ones((3, 8, 8), np.float32)
    depth[1] = 0
    with pytest.raises(InvalidDepthFrame) as ei:
        DepthCameraBackend().process_batch(depth)
    assert ei.value.frame_index == 1


def test_metric_to_inverse_fills_gaps_with_the_farthest_value():
    inv = metric_depth_to_inverse(np.array([[[1.0, 4.0, 0.0]]], np.float32))
    np.testing.assert_allclose(inv, [[[1.0, 0.25, 0.25]]])


def test_depth_camera_provenance_says_so():
    p = make_depth_backend("depth-camera", camera="observation/depth").provenance()
    assert p["backend"] == "depth-camera" and p["camera"] == "observation/depth"


def test_registry_is_strict():
    assert {"depth-anything", "depth-camera"} <= set(depth_backend_names())
    with pytest.raises(ArmdataError, match="known: .*depth-anything.*depth-camera"):
        make_depth_backend("midas")
    with pytest.raises(ValueError, match="already registered"):
        register_depth_backend("depth-camera")(DepthCameraBackend)


def test_depth_anything_through_run_inference_equals_the_backend(tiny_model_dir, tiny_backend):
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from armdata.pipeline.stages.depth_handler import keyed_depth_handler

    frames = _frames(3, seed=4)
    expected = [(i, tiny_backend.process_batch(frames[i : i + 1])[0].tobytes()) for i in range(3)]
    handler = keyed_depth_handler("depth-anything", {"model": tiny_model_dir, "input_size": 252}, max_batch_size=2)
    with TestPipeline() as p:
        out = (
            p
            | beam.Create([(i, frames[i]) for i in range(3)])
            | RunInference(handler)
            | beam.MapTuple(lambda k, m: (k, m.tobytes()))
        )
        assert_that(out, equal_to(expected))
