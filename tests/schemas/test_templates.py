"""The rendered MolmoAct text is byte-identical to MolmoAct's wording, and its parsing rules recover the
structured annotation from every answer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from armdata.annotators.actions.normalize import render_action_text
from armdata.annotators.depth.tokenizer import depth_text
from armdata.annotators.molmoact_parse import extract_action_token_lists, extract_depth_string, extract_trace_lists
from armdata.annotators.trace import trace_text
from armdata.schemas.templates import TEMPLATES, TemplateSettings, TextInputs, applicable, render_all

GOLDEN = json.loads((Path(__file__).parent / "golden" / "molmoact_text.json").read_text(encoding="utf-8"))["inputs"]

T = GOLDEN["instruction"]
D = "<DEPTH_START>" + "".join(f"<DEPTH_{k}>" for k in GOLDEN["depth_codes"]) + "<DEPTH_END>"
TRACE = "[[12, 200], [40, 180], [90, 150], [130, 120], [255, 0]]"
A = "[" + ", ".join(GOLDEN["action_symbols"]) + "]"


def _inputs() -> TextInputs:
    return TextInputs(
        instruction=T,
        depth=depth_text(GOLDEN["depth_codes"]),
        trace=trace_text(np.asarray(GOLDEN["trace"])),
        action=render_action_text(GOLDEN["action_symbols"]),
    )


def test_renderers_make_the_documented_fragments():
    x = _inputs()
    assert (x.depth, x.trace, x.action) == (D, TRACE, A)


def test_reasoning_text_is_molmoact_wording_byte_for_byte():
    out = render_all(_inputs(), TemplateSettings())["reasoning"]
    assert out["prompt"] == (
        f"The task is {T}. What is the action that the robot should take. To figure out the action that the robot "
        f"should take to {T}, let's think through it step by step. First, what is the depth map for this image? "
        "Second, what is the trajectory of the end effector? Based on the depth map of the image and the "
        "trajectory of the end effector, what is the action that the robot should take?"
    )
    assert out["answer"] == (
        f"The depth map of the image is {D}. The trajectory of the end effector is {TRACE}. Based on this "
        f"information, the action that the robot should take is {A}."
    )


def test_information_phrase_setting_gives_the_model_card_wording():
    out = render_all(_inputs(), TemplateSettings(information_phrase="these"))["reasoning"]
    assert "Based on these information, the action" in out["answer"]


def test_trajectory_conditioned_text_is_molmoact_wording_byte_for_byte():
    out = render_all(_inputs(), TemplateSettings())["trajectory_conditioned"]
    assert out["prompt"] == (
        f"The task is {T}. Notice that the trajectory of the end effector is annotated on the image. Based on the "
        "trajectory annotated on the image, what is the action that the robot should take?"
    )
    assert out["answer"] == (
        "Based on the image and the annotated trajectory of the end effector, the action that the robot should "
        f"take is {A}."
    )


@pytest.mark.parametrize("wording", ["molmoact", "armdata"])
def test_multi_view_wording_names_the_first_image_and_other_views(wording):
    out = render_all(_inputs(), TemplateSettings(multi_view=True, wording=wording))
    assert "depth map for the first image" in out["reasoning"]["prompt"]
    assert "along with other images from different camera views as additional information" in out["reasoning"]["prompt"]
    assert "annotated on the first image" in out["trajectory_conditioned"]["prompt"]


# A chunk of two steps (MolmoAct's chunked_action form): [[s1..s7], [s1..s7]].
CHUNK = "[" + ", ".join([A, A]) + "]"


def test_multi_view_molmoact_wording_is_its_fine_tuning_loaders_byte_for_byte():
    # Expected strings typed from allenai/molmoact olmo/data/custom_lerobot_dataset.py (format_action_reasoning,
    # format_trajectory_conditioned); the prompt is also run_libero_eval.py's.
    x = TextInputs(instruction=T, depth=D, trace=TRACE, action=A, action_chunk=CHUNK)
    out = render_all(x, TemplateSettings(multi_view=True, wording="molmoact"))
    assert out["reasoning"]["prompt"] == (
        f"The task is {T}. What is the action that the robot should take. To figure out the action that the robot "
        f"should take to {T}, let's think through it step by step. First, what is the depth map for the first "
        "image? Second, what is the trajectory of the end effector in the first image? Based on the depth map of "
        "the first image and the trajectory of the end effector in the first image, along with other images from "
        "different camera views as additional information, what is the action that the robot should take?"
    )
    assert out["reasoning"]["answer"] == (
        f"The depth map of the image is {D}. The trajectory of the left end effector is {TRACE}. The trajectory of "
        f"the right end effector is {TRACE}. Based on this information, the action that the robot should take is "
        f"{CHUNK}."
    )
    assert out["trajectory_conditioned"]["prompt"] == (
        f"The task is {T}. Notice that the trajectory of the end effector is annotated on the first image. Based on "
        "the trajectory annotated on the image, along with other images from different camera views as additional "
        "information, what is the action that the robot should take?"
    )
    assert out["trajectory_conditioned"]["answer"] == (
        "Based on the image and the annotated trajectory of the end effector, the action that the robot should take "
        f"is {CHUNK}."
    )


@pytest.mark.parametrize("multi_view,wording", [(False, "molmoact"), (True, "molmoact"), (True, "armdata")])
def test_molmoact_parsers_recover_codes_trace_and_symbols_from_every_answer(multi_view, wording):
    texts = render_all(_inputs(), TemplateSettings(multi_view=multi_view, wording=wording))
    assert set(texts) == set(TEMPLATES.names())
    # MolmoAct's fine-tuning answer names the one trace twice (left and right end effector), as released.
    traces = 2 if multi_view and wording == "molmoact" else 1
    for name, t in texts.items():
        answer = t["answer"]
        if name in ("reasoning", "depth_only"):
            (depth,) = extract_depth_string(answer)
            assert [int(k) for k in re.findall(r"<DEPTH_(\d+)>", depth)] == GOLDEN["depth_codes"]
        if name == "reasoning":
            assert extract_trace_lists(answer) == [GOLDEN["trace"]] * traces
        if name == "trace_only":
            assert extract_trace_lists(answer) == [GOLDEN["trace"]]
        if name in ("reasoning", "trajectory_conditioned"):
            assert extract_action_token_lists(answer) == [GOLDEN["action_symbols"]]


def test_chunked_answers_carry_every_step_of_the_chunk():
    x = TextInputs(instruction=T, depth=D, trace=TRACE, action=A, action_chunk=CHUNK)
    answer = render_all(x, TemplateSettings(multi_view=True, wording="molmoact"))["reasoning"]["answer"]
    assert extract_action_token_lists(answer) == [GOLDEN["action_symbols"]] * 2


def test_step_without_trace_gets_only_the_templates_that_need_none():
    x = TextInputs(instruction=T, depth=D, trace=None, action=A)
    assert applicable(x) == ["depth_only"]


def test_unknown_template_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: reasoning, trajectory_conditioned"):
        TEMPLATES.get("reasonin")
