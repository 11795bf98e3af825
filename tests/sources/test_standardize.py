"""Canonical actions value by value, through the real reader and standardizer, for each RLDS layout.

The factories build the canonical actions first and derive the raw layout from them (signs, scales, relative
gripper commands, inverted grippers), so these tests compare against values fixed by construction.
"""

from __future__ import annotations

import numpy as np
import pytest

import rlds_factory
from armdata.pipeline.sources.rlds import read_episodes
from armdata.pipeline.sources.standardize import gripper_to_open, standardize
from armdata.schemas.errors import RecordError
from armdata.schemas.source import Gripper, load_source


def _standardized(ds: rlds_factory.FactoryDataset, source_file) -> dict[str, object]:
    cfg = load_source(source_file(ds.source))
    return {s.instruction: s for s in (standardize(ep, cfg) for ep in read_episodes(cfg))}


def _assert_layout(ds: rlds_factory.FactoryDataset, source_file) -> None:
    got = _standardized(ds, source_file)
    assert sorted(got) == sorted(e.instruction for e in ds.episodes)
    for ep in ds.episodes:
        std = got[ep.instruction]
        assert std.actions.dtype == np.float32
        assert std.actions.shape == (ep.num_steps, 7)
        # exact: every factory transform (sign, power-of-two scale, gripper mapping) is exact in float32
        np.testing.assert_array_equal(std.actions, ep.expected_actions)
        primary = next(iter(ep.frames.values()))
        np.testing.assert_array_equal(std.primary, primary)


def test_bridge_like_flat_action_absolute_gripper_matches_canonical(bridge_like_ds, source_file):
    _assert_layout(bridge_like_ds, source_file)


def test_rt1_like_nested_action_relative_gripper_matches_canonical(rt1_like_ds, source_file):
    _assert_layout(rt1_like_ds, source_file)
    # the factory's gripper tracks open -> closed -> open: the relative commands must have been integrated
    g = rt1_like_ds.episodes[0].expected_actions[:, 6]
    assert g[0] == 1.0 and (g == 0.0).any()


def test_metadata_instruction_inverted_gripper_matches_canonical(meta_instr_ds, source_file):
    _assert_layout(meta_instr_ds, source_file)


def test_rt1_like_without_sign_in_source_file_gives_wrong_y(rt1_like_ds, source_file):
    """The sign setting matters: dropping it flips canonical y (so the layout test above can fail)."""
    src = rlds_factory.with_changes(rt1_like_ds.source, {})
    src["action"]["arm"][0].pop("sign")
    got = _standardized(
        rlds_factory.FactoryDataset(rt1_like_ds.name, rt1_like_ds.builder_dir, "train", rt1_like_ds.episodes, src),
        source_file,
    )
    ep = rt1_like_ds.episodes[0]
    np.testing.assert_array_equal(got[ep.instruction].actions[:, 1], -ep.expected_actions[:, 1])


def test_instruction_is_cleaned_of_padding_and_extra_whitespace(tmp_path, source_file):
    ds = rlds_factory.bridge_like(
        tmp_path, num_episodes=1, num_steps=3, instruction_override={0: "  pick   up\tthe cup \x00\x00"}
    )
    cfg = load_source(source_file(ds.source))
    (ep,) = list(read_episodes(cfg))
    assert standardize(ep, cfg).instruction == "pick up the cup"


def test_non_finite_action_names_source_episode_and_step(tmp_path, source_file):
    ds = rlds_factory.bridge_like(tmp_path, num_episodes=2, num_steps=5, nan_action_at=(1, 3))
    cfg = load_source(source_file(ds.source))
    eps = list(read_episodes(cfg))
    standardize(eps[0], cfg)  # the clean episode passes
    with pytest.raises(RecordError) as info:
        standardize(eps[1], cfg)
    err = info.value
    assert (err.source, err.episode, err.step, err.kind) == (ds.name, eps[1].episode_key, 3, "non_finite_action")
    assert "z" in err.field
    text = str(err)
    assert ds.name in text and eps[1].episode_key in text and "step=3" in text


def test_wrong_raw_width_in_source_file_is_a_record_error(bridge_like_ds, source_file):
    src = rlds_factory.with_changes(bridge_like_ds.source, {"action.raw_width": {"action": 8}})
    cfg = load_source(source_file(src))
    ep = next(read_episodes(cfg))
    with pytest.raises(RecordError, match="width 7.*says 8"):
        standardize(ep, cfg)


@pytest.mark.parametrize(
    "commands, expected",
    [
        ([0, 0, 1, 0, 0, -1, 0], [1, 1, 0, 0, 0, 1, 1]),  # before the first 'close' the gripper was open
        ([0, -1, 0, 1], [0, 1, 1, 0]),  # before the first 'open' it was closed
        ([0, 0, 0], [1, 1, 1]),  # no command at all: open
        ([0.05, 0.5, -0.05], [1, 0, 0]),  # below the threshold keeps the state
    ],
)
def test_relative_gripper_commands_integrate_to_open_state(commands, expected):
    g = Gripper(path="a", mode="relative", close_command_sign=1.0, threshold=0.1)
    np.testing.assert_array_equal(gripper_to_open(np.asarray(commands, float), g), expected)


def test_relative_gripper_with_negative_close_sign():
    g = Gripper(path="a", mode="relative", close_command_sign=-1.0)
    np.testing.assert_array_equal(gripper_to_open(np.array([-1.0, 0.0, 1.0]), g), [0, 0, 1])


def test_factory_relative_commands_round_trip_through_standardizer_rule():
    track = np.array([1, 1, 0, 0, 1, 0], np.float32)
    cmd = rlds_factory.relative_gripper_commands(track)
    np.testing.assert_array_equal(gripper_to_open(cmd, Gripper(path="a", mode="relative")), track)


def test_extra_views_sharing_a_last_path_part_get_distinct_names():
    from armdata.pipeline.sources.standardize import view_names

    assert view_names(["observation/image_1", "observation/image_2"]) == {
        "observation/image_1": "image_1", "observation/image_2": "image_2"}
    assert view_names(["left/rgb", "right/rgb", "wrist.cam"]) == {
        "left/rgb": "left_rgb", "right/rgb": "right_rgb", "wrist.cam": "wrist_cam"}
