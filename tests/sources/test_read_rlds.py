"""The RLDS reader against tfds itself (real Bridge sample) and against factory datasets, plus its bad-input errors."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

import rlds_factory
from armdata.pipeline.sources.rlds import (
    DataLocationError,
    EpisodeDecoder,
    iter_records,
    read_episodes,
    read_episodes_or_errors,
    shard_paths,
)
from armdata.pipeline.sources.standardize import standardize
from armdata.schemas.errors import ArmdataError, RecordError, SourceFileError
from armdata.schemas.source import load_source

from conftest import REPO


@pytest.fixture(scope="module")
def bridge_debug_source(bridge_debug_dir):
    return load_source(REPO / "sources" / "bridge_debug.yaml")


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


@pytest.fixture(scope="module")
def bridge_debug_tfds(bridge_debug_dir):
    """Every episode of the real sample as tfds itself reads it: (instruction per step, actions, image_0)."""
    import tensorflow_datasets as tfds

    ds = tfds.builder_from_directory(str(bridge_debug_dir)).as_dataset(split="train", shuffle_files=False)
    out = []
    for ep in tfds.as_numpy(ds):
        steps = list(ep["steps"])
        out.append(
            {
                "instructions": [s["language_instruction"].decode() for s in steps],
                "actions": np.stack([s["action"] for s in steps]),
                "image_0": np.stack([s["observation"]["image_0"] for s in steps]),
                "file_path": ep["episode_metadata"]["file_path"],
                "episode_id": int(ep["episode_metadata"]["episode_id"]),
            }
        )
    return out


def test_real_bridge_reads_all_25_episodes_matching_tfds(bridge_debug_source, bridge_debug_tfds, tf):
    ours = list(read_episodes(bridge_debug_source))
    assert len(ours) == len(bridge_debug_tfds) == 25
    # one shard, records in file order on both sides: episode i is tfds's episode i
    for ep, ref in zip(ours, bridge_debug_tfds):
        assert ep.num_steps == len(ref["instructions"]) == 10
        assert ep.instruction == ref["instructions"][0]
        assert ep.metadata["file_path"] == ref["file_path"]
        assert int(ep.metadata["episode_id"]) == ref["episode_id"]
        np.testing.assert_array_equal(ep.actions_raw["action"], ref["actions"])
        # Same JPEG bytes, two decoders: tfds's as_dataset decodes with TF's default (fast integer IDCT), the
        # per-record path with an accurate IDCT (equal to PIL); pixels differ by up to ~15 grey levels. So: the
        # stored bytes must decode, TF's way, to exactly what tfds gives, and our frames must equal PIL's decode.
        tf_way = np.stack([tf.io.decode_jpeg(j).numpy() for j in ep.jpeg["observation/image_0"]])
        np.testing.assert_array_equal(tf_way, ref["image_0"])
        pil = np.stack([np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in ep.jpeg["observation/image_0"]])
        np.testing.assert_array_equal(ep.frames["observation/image_0"], pil)


def test_real_bridge_standardized_actions_and_instructions_match_tfds(bridge_debug_source, bridge_debug_tfds):
    for ep, ref in zip(read_episodes(bridge_debug_source), bridge_debug_tfds):
        std = standardize(ep, bridge_debug_source)
        assert std.instruction == " ".join(ref["instructions"][0].split())
        assert std.instruction in {
            "put cup from counter or drying rack into sink", "flip pot upright which is in sink",
            "turn lever vertical to front", "put carrot on plate",
        }
        # Bridge's action is already [xyz rpy deltas, gripper 1 = open]: canonical equals raw
        np.testing.assert_array_equal(std.actions, ref["actions"].astype(np.float32))
        assert set(np.unique(std.actions[:, 6])) <= set(np.unique(ref["actions"][:, 6]))


def test_real_bridge_episode_keys_are_stable_unique_and_dot_free(bridge_debug_source):
    keys = [ep.episode_key for ep in read_episodes(bridge_debug_source, limit=5)]
    again = [ep.episode_key for ep in read_episodes(bridge_debug_source, limit=5)]
    assert keys == again and len(set(keys)) == 5 and not any("." in k for k in keys)


def test_real_bridge_jpeg_bytes_pass_through(bridge_debug_source):
    ep = next(read_episodes(bridge_debug_source, limit=1))
    jpegs = ep.jpeg["observation/image_0"]
    assert len(jpegs) == ep.num_steps and all(j[:2] == b"\xff\xd8" for j in jpegs)


def test_factory_frames_state_and_metadata_instruction_round_trip(meta_instr_ds, rt1_like_ds, source_file):
    for ds in (meta_instr_ds, rt1_like_ds):
        cfg = load_source(source_file(ds.source))
        eps = list(read_episodes(cfg))
        assert [e.instruction for e in eps] == [e.instruction for e in ds.episodes]
        for ep, ref in zip(eps, ds.episodes):
            for cam, frames in ref.frames.items():
                np.testing.assert_array_equal(ep.frames[cam], frames)
            for path, raw in ref.actions_raw.items():
                np.testing.assert_array_equal(ep.actions_raw[path].reshape(raw.shape), raw)
            for path, st in ref.state.items():
                np.testing.assert_array_equal(ep.state[path], st)


def test_decoder_reads_each_shard_record_like_the_local_reader(rt1_like_ds, source_file):
    """The per-record path Beam uses (shard_paths + iter_records + decode) gives the same episodes."""
    cfg = load_source(source_file(rt1_like_ds.source))
    dec = EpisodeDecoder(cfg)
    beam_way = [dec.decode(rec, shard, i) for shard in shard_paths(cfg) for i, rec in iter_records(shard)]
    local = list(read_episodes(cfg))
    assert [e.episode_key for e in beam_way] == [e.episode_key for e in local]
    for a, b in zip(beam_way, local):
        np.testing.assert_array_equal(a.actions_raw["action/world_vector"], b.actions_raw["action/world_vector"])


def test_missing_data_dir_names_source_and_dir(bridge_like_ds, source_file, tmp_path):
    missing = tmp_path / "nowhere" / "1.0.0"
    cfg = load_source(source_file(rlds_factory.with_changes(bridge_like_ds.source, {"data.dir": str(missing)})))
    with pytest.raises(DataLocationError, match=f"source {bridge_like_ds.name}.*nowhere"):
        list(read_episodes(cfg))


def test_unknown_split_lists_the_splits_that_exist(bridge_like_ds, source_file):
    cfg = load_source(source_file(rlds_factory.with_changes(bridge_like_ds.source, {"data.split": "validation"})))
    with pytest.raises(DataLocationError, match="unknown split 'validation'.*splits that exist: train"):
        list(read_episodes(cfg))


def test_relative_data_dir_resolves_against_the_source_file(bridge_like_ds, tmp_path):
    data = tmp_path / "data" / "ds" / "1.0.0"
    shutil.copytree(bridge_like_ds.builder_dir, data)
    src = rlds_factory.with_changes(bridge_like_ds.source, {"data.dir": "../data/ds/1.0.0"})
    path = rlds_factory.write_source(tmp_path / "sources", src)
    assert len(list(read_episodes(load_source(path)))) == len(bridge_like_ds.episodes)


def test_episode_with_zero_steps_is_a_record_error_and_others_still_read(tmp_path, source_file):
    ds = rlds_factory.bridge_like(tmp_path, num_episodes=3, num_steps=4, empty_episode=1)
    cfg = load_source(source_file(ds.source))
    items = list(read_episodes_or_errors(cfg))
    errors = [x for x in items if isinstance(x, RecordError)]
    assert len(items) == 3 and len(errors) == 1
    err = errors[0]
    assert (err.source, err.kind, err.step) == (ds.name, "empty_episode", None)
    assert err.episode and "." not in err.episode and err.episode in str(err)
    with pytest.raises(RecordError, match="0 steps"):
        list(read_episodes(cfg))


def test_field_path_that_does_not_exist_names_setting_and_existing_keys(bridge_like_ds, source_file):
    src = rlds_factory.with_changes(bridge_like_ds.source, {"cameras.primary": "observation/imag_0"})
    path = source_file(src)
    with pytest.raises(ArmdataError) as info:
        list(read_episodes(load_source(path)))
    text = str(info.value)
    assert str(path) in text and "cameras.primary" in text and "observation/imag_0" in text
    assert "observation/image_0" in text and "language_instruction" in text  # the keys that do exist


def test_field_path_typo_is_a_source_file_error_not_a_record_error(bridge_like_ds, source_file):
    src = rlds_factory.with_changes(bridge_like_ds.source, {"action.gripper.path": "actoin"})
    with pytest.raises(SourceFileError):
        list(read_episodes(load_source(source_file(src))))


def test_bc_z_like_action_keys_containing_slash_standardize(tmp_path, source_file):
    ds = rlds_factory.bc_z_like(tmp_path)
    cfg = load_source(source_file(ds.source))
    got = {s.instruction: s for s in (standardize(ep, cfg) for ep in read_episodes(cfg))}
    for ep in ds.episodes:
        np.testing.assert_array_equal(got[ep.instruction].actions, ep.expected_actions)
