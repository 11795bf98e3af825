"""Action ids <-> vocabulary symbols through a real (small, locally built) Qwen2-style tokenizer, and the text
round trip through MolmoAct's parsing rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from armdata.annotators.actions.tokenizer import ActionTokenizer, ActionTokenizerError, make_test_tokenizer
from armdata.annotators.actions.normalize import (
    N_BINS,
    ActionStats,
    chunk,
    encode,
    ids_to_normalized,
    normalize,
    render_action_chunk_text,
    render_action_text,
)
from armdata.annotators.molmoact_parse import extract_action_id_lists, extract_action_token_lists, parse_actions


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return make_test_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tok(tok_dir):
    return ActionTokenizer.from_pretrained(tok_dir)


STATS = ActionStats.from_json({"q01": [-0.02, -0.03, -0.02, -0.1, -0.1, -0.2, 0.0],
                               "q99": [0.03, 0.02, 0.025, 0.1, 0.12, 0.2, 1.0]})


def test_test_tokenizer_is_deterministic(tmp_path, tok_dir):
    other = make_test_tokenizer(tmp_path / "again")
    a = json.load(open(f"{tok_dir}/tokenizer.json"))["model"]
    b = json.load(open(f"{other}/tokenizer.json"))["model"]
    assert a == b


def test_vocab_size_excludes_added_special_tokens(tok):
    # <|endoftext|> is added after the base vocabulary, as in Qwen2 (151643 base, endoftext = 151643).
    assert len(tok.tokenizer) == tok.vocab_size + 1
    assert tok.tokenizer.convert_tokens_to_ids("<|endoftext|>") == tok.vocab_size


def test_loaded_through_autotokenizer_as_a_qwen2_tokenizer(tok):
    assert type(tok.tokenizer).__name__ == "Qwen2Tokenizer"
    assert tok.tokenizer.decode(tok.tokenizer("the robot, Привет")["input_ids"]) == "the robot, Привет"


def test_action_symbols_are_merged_non_ascii_symbols_that_read_back(tok):
    symbols = tok.action_symbols()
    assert len(symbols) == N_BINS and len(set(symbols)) == N_BINS
    assert all(len(s) >= 2 for s in symbols)  # ordinary merged symbols, not single bytes
    assert tok.check_action_range() == []
    assert tok.ascii_only_action_ids() == []


def test_ids_to_symbols_uses_vocabulary_symbols_not_decode(tok):
    hi = tok.vocab_size - 1
    sym = tok.ids_to_symbols([hi])[0]
    assert sym != tok.tokenizer.decode([hi])  # 'ĠÐ¯' (symbol) vs ' Я' (decoded text)
    assert tok.symbols_to_ids([sym]) == [hi]


def test_unknown_symbol_maps_to_vocab_size(tok):
    assert tok.symbols_to_ids(["not-a-symbol"]) == [tok.vocab_size]


def test_too_small_vocabulary_is_refused():
    class StandInTinyTokenizer:
        vocab_size = 100

    with pytest.raises(ActionTokenizerError):
        ActionTokenizer(StandInTinyTokenizer(), "tiny")


def test_missing_tokenizer_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ActionTokenizerError):
        ActionTokenizer.from_pretrained(str(tmp_path / "nope"))


@settings(max_examples=150, deadline=None)
@given(arrays(np.float64, 7, elements=st.floats(-0.5, 1.5)))
def test_text_from_ids_parses_back_to_the_same_ids_by_molmoact_rules(tok, action):
    _, ids = encode(action, STATS, tok.vocab_size)
    text = ("The trajectory of the end effector is [[12, 40], [13, 41]]. Based on these, the action that the "
            f"robot should take is {render_action_text(tok.ids_to_symbols(ids))}.")
    assert extract_action_id_lists(text, tok.tokenizer, only_len=7) == [ids.tolist()]
    decoded = parse_actions(text, tok, STATS)
    assert len(decoded) == 1
    np.testing.assert_allclose(normalize(decoded[0], STATS), ids_to_normalized(ids, tok.vocab_size), atol=1e-12)


def test_every_action_id_round_trips_through_text(tok):
    lo, hi = tok.action_id_range
    all_ids = np.arange(lo, hi + 1).reshape(-1, 8)  # 32 lists of 8 covering all 256 ids
    text = render_action_chunk_text([tok.ids_to_symbols(row) for row in all_ids])
    assert extract_action_id_lists(text, tok, only_len=8) == all_ids.tolist()


def test_chunk_text_parses_to_one_list_per_step(tok):
    actions = np.random.default_rng(0).uniform(-0.05, 0.05, (5, 7)).astype(np.float32)
    actions[:, 6] = 1.0
    c = chunk(actions, 2, n=8)
    ids = encode(c, STATS, tok.vocab_size)[1]
    text = render_action_chunk_text([tok.ids_to_symbols(r) for r in ids])
    assert len(extract_action_token_lists(text, only_len=7)) == 8
    assert extract_action_id_lists(text, tok, only_len=7) == ids.tolist()


def test_fingerprint_follows_the_action_symbols(tok, tmp_path):
    again = ActionTokenizer.from_pretrained(make_test_tokenizer(tmp_path / "again"))
    assert again.fingerprint() == tok.fingerprint()
    assert again.revision is None and again.name_or_path.endswith("again")
