"""Source files in sources/, and `armdata sources list | inspect | validate` on real and factory data."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import rlds_factory
from armdata.cli import main
from armdata.pipeline.sources.inspect import camera_stats, draft_source, inspect_builder, validate_source
from armdata.pipeline.sources.rlds import read_episodes
from armdata.pipeline.sources.standardize import standardize
from armdata.schemas.errors import SourceFileError
from armdata.schemas.source import load_source

from conftest import REPO

SOURCE_FILES = ["bridge_debug", "bridge_orig", "fractal20220817_data", "bc_z"]


# ---------------------------------------------------------------------------------------------- source files


@pytest.mark.parametrize("name", SOURCE_FILES)
def test_repository_source_files_load_and_name_matches_file(name):
    cfg = load_source(REPO / "sources" / f"{name}.yaml")
    assert cfg.name == name
    assert len(cfg.action.arm) >= 1 and cfg.action.gripper.path


@pytest.mark.parametrize("name", ["fractal20220817_data", "bc_z"])
def test_open_x_sources_point_at_gresearch_bucket_and_list_unconfirmed(name):
    cfg = load_source(REPO / "sources" / f"{name}.yaml")
    assert cfg.data.dir.startswith(f"gs://gresearch/robotics/{name}/")
    assert cfg.unconfirmed and any("control_hz" in u for u in cfg.unconfirmed)


def test_fractal_source_uses_relative_gripper_and_nested_action_fields():
    cfg = load_source(REPO / "sources" / "fractal20220817_data.yaml")
    assert [s.path for s in cfg.action.arm] == ["action/world_vector", "action/rotation_delta"]
    assert cfg.action.gripper.mode == "relative"
    assert cfg.instruction.path == "observation/natural_language_instruction"


def test_typo_in_an_optional_nested_setting_names_file_key_and_known_keys(bridge_like_ds, source_file):
    src = rlds_factory.with_changes(bridge_like_ds.source, {"cameras.wrsit": "observation/image_1"})
    path = source_file(src)
    with pytest.raises(SourceFileError) as info:
        load_source(path)
    text = str(info.value)
    assert str(path) in text and "cameras.wrsit" in text
    assert "primary" in text and "extra" in text and "wrist" in text  # the keys that exist


def test_typo_in_a_required_setting_names_file_key_and_known_keys(bridge_like_ds, source_file):
    src = rlds_factory.with_changes(bridge_like_ds.source, {})
    src["cameras"]["primray"] = src["cameras"].pop("primary")
    path = source_file(src)
    with pytest.raises(SourceFileError) as info:
        load_source(path)
    text = str(info.value)
    assert str(path) in text and "primray" in text
    assert "primary" in text and "extra" in text and "wrist" in text  # the keys that exist


def test_typo_in_a_top_level_setting_names_the_known_top_level_keys(bridge_like_ds, source_file):
    src = rlds_factory.with_changes(bridge_like_ds.source, {"control_rate": 5})
    with pytest.raises(SourceFileError, match=r"control_rate.*keys that exist:.*control_hz"):
        load_source(source_file(src))


# ---------------------------------------------------------------------------------------------- inspect


@pytest.fixture(scope="module")
def bridge_inspection(bridge_debug_dir):
    return inspect_builder(bridge_debug_dir, episodes=2)


def test_inspect_real_bridge_lists_all_fields_and_flags_image_3_black(bridge_inspection):
    paths = {f.path for f in bridge_inspection.fields}
    expected = {
        "action", "discount", "is_first", "is_last", "is_terminal", "language_embedding", "language_instruction",
        "observation/image_0", "observation/image_1", "observation/image_2", "observation/image_3",
        "observation/state", "reward", "episode_metadata/file_path", "episode_metadata/episode_id",
        "episode_metadata/has_image_0", "episode_metadata/has_image_1", "episode_metadata/has_image_2",
        "episode_metadata/has_image_3", "episode_metadata/has_language",
    }
    assert paths == expected
    black = {f.path for f in bridge_inspection.fields if f.camera and f.camera.black}
    assert black == {"observation/image_3"}
    action = bridge_inspection.field("action")
    assert (action.shape, action.dtype, action.kind) == ((7,), "float32", "Tensor")
    assert bridge_inspection.field("language_instruction").example.startswith("'put cup")
    text = bridge_inspection.render()
    assert "observation/image_3" in text and "BLACK" in text and "language_instruction" in text


def test_camera_stats_tell_black_constant_frozen_and_live_apart():
    rng = np.random.default_rng(0)
    live = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    assert camera_stats([live]).flags() == []
    assert camera_stats([np.zeros((4, 8, 8, 3), np.uint8)]).flags() == ["BLACK"]
    assert camera_stats([np.full((4, 8, 8, 3), 200, np.uint8)]).flags() == ["CONSTANT"]
    assert camera_stats([np.repeat(live[:1], 4, axis=0)]).flags() == ["FROZEN"]


def test_draft_for_real_bridge_loads_and_validates(bridge_inspection, tmp_path):
    text = draft_source(bridge_inspection, name="bridge_draft")
    assert "# guess:" in text
    path = tmp_path / "bridge_draft.yaml"
    path.write_text(text)
    cfg = load_source(path)
    assert cfg.cameras.primary == "observation/image_0"
    assert "observation/image_3" not in cfg.cameras.extra
    assert cfg.instruction.path == "language_instruction"
    assert cfg.unconfirmed and any(u.startswith("cameras.primary") for u in cfg.unconfirmed)
    assert validate_source(path, episodes=2).ok


@pytest.mark.parametrize("layout", ["bridge_like_ds", "rt1_like_ds"])
def test_draft_guesses_reproduce_factory_canonical_actions(layout, request, tmp_path):
    ds = request.getfixturevalue(layout)
    path = tmp_path / "draft.yaml"
    path.write_text(draft_source(inspect_builder(ds.builder_dir), name="draft"))
    cfg = load_source(path)
    if layout == "rt1_like_ds":
        assert cfg.action.gripper.mode == "relative"
        # the factory negates y and halves rotations: the draft cannot know that, so fix those two settings
        raw = yaml.safe_load(path.read_text())
        raw["action"]["arm"] = ds.source["action"]["arm"]
        path.write_text(yaml.safe_dump(raw))
        cfg = load_source(path)
    got = {s.instruction: s.actions for s in (standardize(e, cfg) for e in read_episodes(cfg))}
    for ep in ds.episodes:
        np.testing.assert_array_equal(got[ep.instruction], ep.expected_actions)


def test_draft_finds_instruction_only_in_episode_metadata(meta_instr_ds, tmp_path):
    path = tmp_path / "draft.yaml"
    path.write_text(draft_source(inspect_builder(meta_instr_ds.builder_dir)))
    cfg = load_source(path)
    assert cfg.instruction.path == "episode_metadata/language_instruction"
    assert cfg.cameras.primary == "observation/rgb"


# ---------------------------------------------------------------------------------------------- validate


def test_validate_real_bridge_source_passes(bridge_debug_dir):
    report = validate_source(REPO / "sources" / "bridge_debug.yaml", episodes=3)
    assert report.ok, report.render()
    names = {c.name for c in report.checks if c.status == "ok"}
    assert {"source file", "data", "field paths", "shapes", "cameras.primary", "read + standardize",
            "instruction"} <= names


def _failed(report) -> str:
    assert not report.ok
    return "\n".join(f"{c.name}: {c.detail}" for c in report.failures)


def test_validate_fails_on_black_primary_camera(bridge_like_ds, source_file):
    src = rlds_factory.with_changes(bridge_like_ds.source, {"cameras.primary": "observation/image_3"})
    assert "observation/image_3 is black" in _failed(validate_source(source_file(src)))


def test_validate_fails_on_empty_instruction(tmp_path, source_file):
    ds = rlds_factory.bridge_like(tmp_path, num_episodes=2, num_steps=3, instruction_override={1: ""})
    assert "empty instruction" in _failed(validate_source(source_file(ds.source)))


def test_validate_fails_on_non_finite_action_naming_episode_and_step(tmp_path, source_file):
    ds = rlds_factory.bridge_like(tmp_path, num_episodes=2, num_steps=4, nan_action_at=(0, 2))
    text = _failed(validate_source(source_file(ds.source)))
    assert "non_finite_action" in text and "step=2" in text and ds.name in text


def test_validate_fails_on_empty_episode(tmp_path, source_file):
    ds = rlds_factory.bridge_like(tmp_path, num_episodes=2, num_steps=4, empty_episode=0)
    assert "empty_episode" in _failed(validate_source(source_file(ds.source)))


def test_validate_fails_on_field_path_typo_naming_existing_keys(bridge_like_ds, source_file):
    src = rlds_factory.with_changes(bridge_like_ds.source, {"instruction.path": "language_instructoin"})
    text = _failed(validate_source(source_file(src)))
    assert "instruction.path" in text and "language_instructoin" in text and "language_instruction," in text


def test_validate_fails_on_wrong_action_width_and_index(bridge_like_ds, source_file):
    src = rlds_factory.with_changes(bridge_like_ds.source, {"action.raw_width": {"action": 6}})
    src["action"]["arm"][0]["index"] = [0, 1, 2, 3, 4, 9]
    text = _failed(validate_source(source_file(src)))
    assert "width 7, the file says 6" in text and "[9] out of range" in text


def test_validate_fails_on_setting_typo_missing_dir_and_unknown_split(bridge_like_ds, source_file, tmp_path):
    typo = rlds_factory.with_changes(bridge_like_ds.source, {"instruction.lowercse": True})
    assert "lowercse" in _failed(validate_source(source_file(typo, "typo.yaml")))
    missing = rlds_factory.with_changes(bridge_like_ds.source, {"data.dir": str(tmp_path / "gone")})
    assert "cannot open" in _failed(validate_source(source_file(missing, "missing.yaml")))
    split = rlds_factory.with_changes(bridge_like_ds.source, {"data.split": "test"})
    assert "unknown split 'test'" in _failed(validate_source(source_file(split, "split.yaml")))


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_validate_exit_status(bridge_like_ds, source_file, capsys):
    good = source_file(bridge_like_ds.source, "good.yaml")
    bad = source_file(rlds_factory.with_changes(bridge_like_ds.source, {"cameras.primary": "observation/image_3"}),
                      "bad.yaml")
    assert main(["sources", "validate", str(good)]) == 0
    assert "result: PASS" in capsys.readouterr().out
    assert main(["sources", "validate", str(bad)]) == 1
    assert "result: FAIL" in capsys.readouterr().out


def test_cli_inspect_writes_draft_and_reports_missing_dir(rt1_like_ds, tmp_path, capsys):
    draft = tmp_path / "out" / "draft.yaml"
    assert main(["sources", "inspect", str(rt1_like_ds.builder_dir), "--write-draft", str(draft)]) == 0
    out = capsys.readouterr().out
    assert "action/gripper_closedness_action" in out and draft.exists()
    assert load_source(draft).name == "rt1_like"
    assert main(["sources", "inspect", str(tmp_path / "nothing")]) == 2
    assert "cannot open" in capsys.readouterr().err


def test_cli_list_shows_name_split_and_data_dir_and_broken_files(tmp_path, bridge_like_ds, capsys):
    rlds_factory.write_source(tmp_path, bridge_like_ds.source)
    (tmp_path / "broken.yaml").write_text("name: broken\nnot_a_setting: 1\n")
    assert main(["sources", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{bridge_like_ds.name}" in out and str(bridge_like_ds.builder_dir) in out and "train" in out
    assert "broken" in out and "ERROR" in out
    assert main(["sources", "list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in SOURCE_FILES)


def test_inspect_handles_keys_containing_slash_and_drafts_bc_z_like_mapping(tmp_path):
    ds = rlds_factory.bc_z_like(tmp_path)
    insp = inspect_builder(ds.builder_dir)
    f = insp.field("action/future/xyz_residual")
    assert f is not None and f.shape == (30,) and f.values is not None
    path = tmp_path / "draft.yaml"
    path.write_text(draft_source(insp))
    cfg = load_source(path)
    assert [(s.path, s.index) for s in cfg.action.arm] == [
        ("action/future/xyz_residual", [0, 1, 2]), ("action/future/axis_angle_residual", [0, 1, 2])]
    g = cfg.action.gripper
    assert (g.path, g.mode, g.open_value, g.closed_value) == ("action/future/target_close", "absolute", 0.0, 1.0)


def test_validate_the_builtin_sample_source_passes():
    from armdata.pipeline.sources.inspect import validate_source

    report = validate_source(str(REPO / "sources" / "sample.yaml"), episodes=2)
    assert report.ok, report.render()


def test_unset_variable_in_data_dir_is_named(monkeypatch):
    monkeypatch.delenv("ARMDATA_DATA", raising=False)
    cfg = load_source(REPO / "sources" / "bridge_orig.yaml")
    with pytest.raises(SourceFileError, match=r"data.dir: .*ARMDATA_DATA, which is not set"):
        cfg.data_dir()
    monkeypatch.setenv("ARMDATA_DATA", "/data")
    assert cfg.data_dir() == "/data/bridge_dataset/1.0.0"
