"""Versioned text templates, rendered from a sample's structured annotation (no model needed to re-render).

The one-view ``reasoning`` and ``trajectory_conditioned`` wordings are MolmoAct's, character for character, from
its released data loader; ``information_phrase`` chooses between the loader's "this information" (default) and
the model card's "these information". With more than one view, ``wording="molmoact"`` (the molmoact preset) gives
the wording of MolmoAct's released fine-tuning loader (``olmo/data/custom_lerobot_dataset.py``, the same prompt as
``run_libero_eval.py``), whose answers carry the action chunk (``chunked_action``, 8 steps) and, as released, name
the trace twice, as the "left" and the "right" end effector's; ``wording="armdata"`` gives armdata's own
multi-view wording (one step, "the first image is the main view"). The ``depth_only`` / ``trace_only``
auxiliary templates are armdata's own (marked ``origin="armdata"``).

{T} instruction, {D} ``<DEPTH_START><DEPTH_k>x100<DEPTH_END>``, {trace} ``[[u, v], ...]``, {A} ``[s1, ..., s7]``,
{chunk} ``[[s1, ..., s7], ...]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from armdata.schemas.registry import Registry

TEMPLATE_VERSION = "molmoact-2"  # 2: MolmoAct's released multi-view wording with action chunks


@dataclass(frozen=True)
class TemplateSettings:
    information_phrase: str = "this"  # "this" (MolmoAct's loader) or "these" (its model card's example)
    multi_view: bool = False  # the source stores extra views: use the "first image" wording
    wording: str = "molmoact"  # multi-view wording: "molmoact" (its fine-tuning loader) or "armdata"


@dataclass(frozen=True)
class TextInputs:
    instruction: str
    depth: str | None  # rendered depth string, or None when the step has no depth codes
    trace: str | None  # rendered trace, or None when the step has no trace
    action: str  # rendered action symbols
    action_chunk: str | None = None  # rendered chunk [[...], ...] (MolmoAct's chunked_action), when chunks are on


@dataclass(frozen=True)
class Template:
    name: str
    origin: str  # "molmoact" (their wording) or "armdata" (ours)
    needs: tuple[str, ...]  # inputs that must be present: "depth", "trace"
    render: Callable[[TextInputs, TemplateSettings], tuple[str, str]]


def _image(s: TemplateSettings) -> str:
    return "the first image" if s.multi_view else "this image"


def _views_clause(s: TemplateSettings) -> str:
    return (
        " The first image is the main view, along with other images from different camera views as additional"
        " information."
        if s.multi_view
        else ""
    )


def _molmoact_views(s: TemplateSettings) -> bool:
    return s.multi_view and s.wording == "molmoact"


def _reasoning_molmoact_views(x: TextInputs, s: TemplateSettings) -> tuple[str, str]:
    """MolmoAct's fine-tuning loader (format_action_reasoning), word for word."""
    prompt = (
        f"The task is {x.instruction}. What is the action that the robot should take. "
        f"To figure out the action that the robot should take to {x.instruction}, let's think through it step by "
        "step. First, what is the depth map for the first image? Second, what is the trajectory of the end effector "
        "in the first image? Based on the depth map of the first image and the trajectory of the end effector in the "
        "first image, along with other images from different camera views as additional information, what is the "
        "action that the robot should take?"
    )
    answer = (
        f"The depth map of the image is {x.depth}. The trajectory of the left end effector is {x.trace}. "
        f"The trajectory of the right end effector is {x.trace}. Based on {s.information_phrase} information, the "
        f"action that the robot should take is {x.action_chunk or x.action}."
    )
    return prompt, answer


def _trajectory_conditioned_molmoact_views(x: TextInputs, s: TemplateSettings) -> tuple[str, str]:
    """MolmoAct's fine-tuning loader (format_trajectory_conditioned), word for word."""
    prompt = (
        f"The task is {x.instruction}. Notice that the trajectory of the end effector is annotated on the first "
        "image. Based on the trajectory annotated on the image, along with other images from different camera views "
        "as additional information, what is the action that the robot should take?"
    )
    answer = ("Based on the image and the annotated trajectory of the end effector, the action that the robot should "
              f"take is {x.action_chunk or x.action}.")
    return prompt, answer


def _reasoning(x: TextInputs, s: TemplateSettings) -> tuple[str, str]:
    if _molmoact_views(s):
        return _reasoning_molmoact_views(x, s)
    img = _image(s)
    the_img = "the first image" if s.multi_view else "the image"
    prompt = (
        f"The task is {x.instruction}. What is the action that the robot should take.{_views_clause(s)} "
        f"To figure out the action that the robot should take to {x.instruction}, let's think through it step by "
        f"step. First, what is the depth map for {img}? Second, what is the trajectory of the end effector? "
        f"Based on the depth map of {the_img} and the trajectory of the end effector, what is the action that the "
        f"robot should take?"
    )
    answer = (
        f"The depth map of {the_img} is {x.depth}. The trajectory of the end effector is {x.trace}. "
        f"Based on {s.information_phrase} information, the action that the robot should take is {x.action}."
    )
    return prompt, answer


def _trajectory_conditioned(x: TextInputs, s: TemplateSettings) -> tuple[str, str]:
    if _molmoact_views(s):
        return _trajectory_conditioned_molmoact_views(x, s)
    on = "on the first image" if s.multi_view else "on the image"
    prompt = (
        f"The task is {x.instruction}. Notice that the trajectory of the end effector is annotated {on}."
        f"{_views_clause(s)} Based on the trajectory annotated {on}, what is the action that the robot should take?"
    )
    img = "the first image" if s.multi_view else "the image"
    answer = (
        f"Based on {img} and the annotated trajectory of the end effector, the action that the robot should "
        f"take is {x.action}."
    )
    return prompt, answer


def _depth_only(x: TextInputs, s: TemplateSettings) -> tuple[str, str]:
    img = _image(s)
    return (f"The task is {x.instruction}. What is the depth map for {img}?",
            f"The depth map of {img.replace('this ', 'the ')} is {x.depth}.")


def _trace_only(x: TextInputs, s: TemplateSettings) -> tuple[str, str]:
    return (
        f"The task is {x.instruction}. What is the trajectory of the end effector?",
        f"The trajectory of the end effector is {x.trace}.",
    )


TEMPLATES: Registry[Template] = Registry("template", ordered=True)
for _t in (
    Template("reasoning", "molmoact", ("depth", "trace"), _reasoning),
    Template("trajectory_conditioned", "molmoact", ("trace",), _trajectory_conditioned),
    Template("depth_only", "armdata", ("depth",), _depth_only),
    Template("trace_only", "armdata", ("trace",), _trace_only),
):
    TEMPLATES.register(_t.name, _t)


def applicable(inputs: TextInputs, names: list[str] | None = None) -> list[str]:
    """The templates whose inputs this step has (a step without a trace has no trace templates)."""
    have = {"depth": inputs.depth is not None, "trace": inputs.trace is not None}
    return [n for n in (names or TEMPLATES.names()) if all(have[k] for k in TEMPLATES.get(n).needs)]


def render_all(inputs: TextInputs, settings: TemplateSettings, names: list[str] | None = None) -> dict[str, dict[str, str]]:
    """template name -> {"prompt", "answer"} for every applicable template."""
    out = {}
    for name in applicable(inputs, names):
        prompt, answer = TEMPLATES.get(name).render(inputs, settings)
        out[name] = {"prompt": prompt, "answer": answer}
    return out
