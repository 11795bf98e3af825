"""``armdata decode-action``: the by-hand round trip from an action to text and back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from armdata.annotators.actions.tokenizer import make_test_tokenizer
from armdata.cli import main

STATS = {"ds": {"action": {"q01": [-0.02] * 6 + [0.0], "q99": [0.02] * 6 + [1.0], "mask": [True] * 6 + [False],
                           "mean": [0.0] * 7, "std": [0.01] * 7, "min": [-0.05] * 7, "max": [0.05] * 7},
                "num_transitions": 10, "num_trajectories": 2}}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return make_test_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture()
def stats_file(tmp_path):
    p = tmp_path / "dataset_statistics.json"
    p.write_text(json.dumps(STATS))
    return str(p)


@pytest.mark.parametrize("preset", ["molmoact", "armdata"])
def test_encode_then_decode_returns_the_action_within_half_a_bin(tok_dir, stats_file, capsys, preset):
    action = [0.011, -0.004, 0.0, 0.019, -0.02, 0.005, 1.0]
    assert main(["decode-action", "--stats", stats_file, "--tokenizer", tok_dir, "--preset", preset,
                 "--encode", ",".join(map(str, action))]) == 0
    encoded = json.loads(capsys.readouterr().out)
    # the open gripper (1) is written as 1 - 1 = 0 (bin 128) by MolmoAct's ActionProcessor, as 1 (bin 256) by armdata's
    assert encoded["bins"][6] == {"molmoact": 128, "armdata": 256}[preset]
    answer = f"Based on these, the action that the robot should take is {encoded['text']}."
    assert main(["decode-action", "--stats", stats_file, "--dataset", "ds", "--tokenizer", tok_dir,
                 "--preset", preset, "--text", answer]) == 0
    decoded = json.loads(capsys.readouterr().out)
    assert decoded["ids"] == [encoded["ids"]]
    half_bin = np.array([0.02] * 6 + [1.0]) / 255 + 1e-12
    assert np.all(np.abs(np.array(decoded["actions"][0]) - action) <= half_bin)


def test_text_without_action_tokens_exits_non_zero(tok_dir, stats_file, capsys):
    assert main(["decode-action", "--stats", stats_file, "--tokenizer", tok_dir, "--text", "[[1, 2]] [a, b]"]) == 1
    assert json.loads(capsys.readouterr().out)["actions"] == []


def test_unknown_dataset_name_lists_the_known_ones(tok_dir, stats_file, capsys):
    assert main(["decode-action", "--stats", stats_file, "--dataset", "nope", "--tokenizer", tok_dir,
                 "--text", "x"]) == 2
    assert "datasets: ds" in capsys.readouterr().err
