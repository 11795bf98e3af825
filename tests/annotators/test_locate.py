"""Locators: hint and projection on built data, the strict registry, and the pointer path end to end through a
tiny randomly initialised Molmo2 saved with save_pretrained."""

from __future__ import annotations

import numpy as np
import pytest

from armdata.annotators.locate import LOCATORS, LocateResult
from armdata.annotators.locate.pointer import PointerConfig, PointerLocator, gripper_prompt
from armdata.annotators.locate.projection import project_points
from armdata.schemas.errors import ArmdataError, RecordError
from trace_factory import (
    look_at_calibration,
    make_episode,
    make_source,
    save_tiny_molmo2,
    standin_molmo2_processor_factory,
)

H, W = 64, 80


def _frames(t: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (t, H, W, 3), dtype=np.uint8)


def test_registry_is_strict():
    assert LOCATORS.names() == ["detector", "fit", "hint", "pointer", "projection"]
    with pytest.raises(KeyError, match="known: detector, fit, hint, pointer, projection"):
        LOCATORS.create("molmo")
    with pytest.raises(ValueError, match="already registered"):
        LOCATORS.register("hint", object)


def test_not_found_result_has_zero_confidence_and_reason():
    r = LocateResult.not_found("hint", "why")
    assert not r.found and r.confidence == 0.0 and r.reason == "why"
    with pytest.raises(ValueError):
        LocateResult((float("nan"), 1.0), 0.5, "x")


def test_hint_pixel_answers_first_frame_only():
    src = make_source(hint={"pixel": [10.0, 20.0]})
    res = LOCATORS.create("hint").locate(make_episode(_frames()), src, [0, 1, 2])
    assert res[0].uv == (10.0, 20.0) and res[0].confidence == 1.0 and res[0].method == "hint"
    assert [r.found for r in res[1:]] == [False, False]


def test_hint_region_gives_centre_and_size():
    src = make_source(hint={"region": [10, 20, 30, 30]})
    (r,) = LOCATORS.create("hint").locate(make_episode(_frames()), src, [0])
    assert r.uv == (20.0, 25.0) and r.size_px == 10.0 and r.confidence < 1.0


def test_hint_missing_or_outside_image_is_a_record_error():
    ep = make_episode(_frames())
    with pytest.raises(RecordError, match="missing_hint"):
        LOCATORS.create("hint").locate(ep, make_source(), [0])
    with pytest.raises(RecordError, match="outside"):
        LOCATORS.create("hint").locate(ep, make_source(hint={"pixel": [500.0, 5.0]}), [0])


def test_projection_matches_pinhole_model():
    calib = look_at_calibration(H, W, f=50.0, distance=1.0)
    # Base point (0, -0.2, 0.1): camera x = 0.2, y = -0.1, z = 1.0.
    eef = np.array([[0.0, -0.2, 0.1], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    src = make_source(calibration=calib)
    res = LOCATORS.create("projection").locate(make_episode(_frames(), eef), src, [0, 1])
    cx, cy = (W - 1) / 2, (H - 1) / 2
    assert res[0].uv == pytest.approx((50 * 0.2 + cx, 50 * -0.1 + cy))
    assert res[1].uv == pytest.approx((cx, cy))
    assert res[0].size_px == pytest.approx(50 * 0.08 / 1.0)


def test_projection_rescales_intrinsics_to_image_size():
    calib = look_at_calibration(2 * H, 2 * W, f=100.0)
    uv, _ = project_points(np.array([[0.0, -0.2, 0.1]]), make_source(calibration=calib).calibration, H, W)
    assert uv[0] == pytest.approx(((100 * 0.2 + (2 * W - 1) / 2) / 2, (100 * -0.1 + (2 * H - 1) / 2) / 2))


def test_projection_behind_camera_or_outside_image_is_not_found():
    calib = look_at_calibration(H, W, f=50.0, distance=1.0)
    eef = np.array([[2.0, 0.0, 0.0], [0.0, -5.0, 0.0], [0.0, 0.0, 0.0]])  # behind, far right, centre
    res = LOCATORS.create("projection").locate(make_episode(_frames(), eef), make_source(calibration=calib), [0, 1, 2])
    assert [r.reason for r in res] == ["behind_camera", "outside_image", ""]


def test_projection_without_calibration_or_state_is_a_record_error():
    ep = make_episode(_frames(), np.zeros((3, 3)))
    with pytest.raises(RecordError, match="missing_calibration"):
        LOCATORS.create("projection").locate(ep, make_source(), [0])
    with pytest.raises(RecordError, match="missing_eef_position"):
        LOCATORS.create("projection").locate(make_episode(_frames()), make_source(calibration=look_at_calibration(H, W)), [0])


def test_projection_confidence_drops_when_calibration_unconfirmed():
    src = make_source(calibration=look_at_calibration(H, W), unconfirmed=["calibration: guessed from a photo"])
    (r,) = LOCATORS.create("projection").locate(make_episode(_frames(), np.zeros((3, 3))), src, [0])
    assert r.confidence == 0.5


def test_gripper_prompt_for_one_and_two_arms():
    assert gripper_prompt() == "point to the robot gripper"
    assert gripper_prompt("left") == "point to the robot gripper on the left"
    with pytest.raises(ValueError):
        gripper_prompt("middle")


@pytest.fixture(scope="module")
def tiny_molmo2(tmp_path_factory):
    return str(save_tiny_molmo2(tmp_path_factory.mktemp("tiny_molmo2")))


def test_pointer_runs_tiny_molmo2_end_to_end(tiny_molmo2):
    loc = PointerLocator(PointerConfig(model=tiny_molmo2, batch_size=2, max_new_tokens=6),
                         processor_factory=standin_molmo2_processor_factory)
    loc.setup()
    assert loc.family == "molmo2"
    assert type(loc.model).__name__ == "Molmo2ForConditionalGeneration"
    ep = make_episode(_frames(3))
    res = loc.locate(ep, make_source(), [0, 1, 2])
    # Three frames in two batches; a random model writes no point tag, so every answer is "not found".
    assert loc.calls == 3
    assert len(res) == 3 and all(r.method == "pointer" for r in res)
    assert all(not r.found and r.reason == "no_point" for r in res)
    texts = loc.answer_texts(_frames(1))
    assert len(texts) == 1 and isinstance(texts[0], str) and loc.calls == 4


def test_pointer_parses_what_the_model_says(tiny_molmo2, monkeypatch):
    loc = PointerLocator(PointerConfig(model=tiny_molmo2), processor_factory=standin_molmo2_processor_factory)
    loc.setup()
    answers = iter(['<points coords="1 1 500 250">robot gripper</points>', '<point x="10" y="20">g</point>', "none"])
    monkeypatch.setattr(loc, "_molmo2_batch", lambda frames: [next(answers) for _ in frames])
    res = loc.locate_frames(_frames(3))
    assert res[0].uv == pytest.approx((0.5 * W, 0.25 * H))
    assert res[1].uv == pytest.approx((0.1 * W, 0.2 * H))
    assert not res[2].found


def test_pointer_refuses_remote_code_unless_allowed(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "molmo"}')
    with pytest.raises(ArmdataError, match="trust_remote_code"):
        PointerLocator(PointerConfig(model=str(tmp_path))).setup()


def test_pointer_asking_for_cuda_without_it_raises(tiny_molmo2):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ArmdataError, match="CUDA"):
        PointerLocator(PointerConfig(model=tiny_molmo2, device="cuda")).setup()
