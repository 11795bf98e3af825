"""The molmoact preset's action tokens and 8-step chunks equal MolmoAct's ``ActionProcessor`` on the real Bridge
sample, every value.

Golden (tests/annotators/golden/molmoact_bridge_actions.json): MolmoAct's own ``preprocess/processors.py``
``ActionProcessor`` run outside this repository in a throwaway venv (``golden/make_action_goldens.py``) on the 25
Bridge debug episodes read with tfds: its ``compute_dataset_statistics`` over every frame, ``process_action`` per
step and ``chunk_actions`` per episode, with the Qwen2-style test tokenizer (``make_test_tokenizer``), its token
strings mapped back to ids with that tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from armdata.annotators.actions import normalize as act
from armdata.annotators.actions.tokenizer import ActionTokenizer, make_test_tokenizer
from armdata.pipeline.sources.rlds import read_episodes
from armdata.pipeline.sources.standardize import standardize
from armdata.schemas.source import load_source

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((Path(__file__).parent / "golden" / "molmoact_bridge_actions.json").read_text())


@pytest.fixture(scope="module")
def bridge_episodes(bridge_debug_dir):
    import yaml

    spec = yaml.safe_load((REPO / "sources" / "bridge_debug.yaml").read_text())
    spec["data"]["dir"] = str(bridge_debug_dir)
    return spec


@pytest.fixture(scope="module")
def episodes(bridge_episodes, tmp_path_factory):
    import yaml

    path = tmp_path_factory.mktemp("src") / "bridge_debug.yaml"
    path.write_text(yaml.safe_dump(bridge_episodes))
    src = load_source(path)
    return [standardize(ep, src) for ep in read_episodes(src)]


@pytest.fixture(scope="module")
def stats() -> act.ActionStats:
    """MolmoAct's own statistics of the sample (its compute_dataset_statistics), as the file would carry them."""
    return act.ActionStats.from_json(GOLDEN["stats"])


def test_every_action_token_equals_action_processors(episodes, stats):
    assert len(episodes) == len(GOLDEN["episodes"]) == 25
    vocab = GOLDEN["vocab_size"]
    n = 0
    for ep, ref in zip(episodes, GOLDEN["episodes"]):
        assert ep.source_id.startswith(ref["file_path"])  # same episode, same order
        ids = act.bins_to_ids(act.to_bins(act.normalize_molmoact(ep.actions, stats)), vocab)
        assert ids.tolist() == ref["ids"]
        n += ids.size
    assert n == 250 * 7


def test_every_8_step_chunk_equals_action_processors(episodes, stats):
    vocab = GOLDEN["vocab_size"]
    for ep, ref in zip(episodes, GOLDEN["episodes"]):
        chunks = [act.bins_to_ids(act.to_bins(act.normalize_molmoact(act.chunk(ep.actions, t, 8), stats)),
                                  vocab).tolist() for t in range(ep.num_steps)]
        assert chunks == ref["chunk_ids"]  # [steps][8][7], padded with the last step


def test_normalized_values_equal_action_processors_float32(episodes, stats):
    ref = json.loads(GOLDEN["episodes"][0]["processed_action"][0])["normalized_action"]
    ours = act.normalize_molmoact(episodes[0].actions[:1], stats)[0]
    assert ours.dtype == np.float32
    # MolmoAct's normalized_action is before tokenize_action's clip; inside [-1, 1] the two agree exactly.
    assert np.array_equal(ours, np.clip(np.asarray(ref, dtype=np.float32), -1, 1))
    assert ours[6] == np.float32(1.0) - np.float32(episodes[0].actions[0][6])  # gripper written as 1 - a


def test_armdata_preset_writes_the_gripper_as_the_source_says(episodes, stats):
    a = episodes[0].actions
    assert np.allclose(act.normalize(a, stats)[:, 6], np.clip(a[:, 6], -1, 1))
    assert not np.allclose(act.normalize_molmoact(a, stats)[:, 6], act.normalize(a, stats)[:, 6])


def test_symbols_of_the_ids_are_the_tokenizers_own(tmp_path):
    tok = ActionTokenizer.from_pretrained(make_test_tokenizer(tmp_path / "tok"))
    assert tok.vocab_size == GOLDEN["vocab_size"]
    first = json.loads(GOLDEN["episodes"][0]["processed_action"][0])["tokenized_action"]
    assert first == act.render_action_text(tok.ids_to_symbols(GOLDEN["episodes"][0]["ids"][0]))
