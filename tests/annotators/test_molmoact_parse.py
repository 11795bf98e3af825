"""MolmoAct's released answer-parsing rules (re-implemented) on answers shaped like ours and like edge cases."""

from __future__ import annotations

from armdata.annotators.molmoact_parse import (
    action_list_readable,
    check_action_symbol,
    extract_action_id_lists,
    extract_action_token_lists,
    extract_depth_string,
    extract_trace_lists,
    is_number,
)

ANSWER = (
    "The depth map of the image is <DEPTH_START><DEPTH_1><DEPTH_27><DEPTH_END>. "
    "The trajectory of the end effector is [[140, 225], [130, 212], [120, 200]]. "
    "Based on these, the action that the robot should take is [ĠÐ«, Ñģ, ÑĤ, Ñĥ, \"ÑĦ\", 'ĠÐ¬', ĠÐŃ]."
)


def test_numbers_follow_the_released_pattern():
    for s in ("1", "-2", "+3.5", ".5", "1e-3", "2.0E+4"):
        assert is_number(s), s
    for s in ("", "1.", "a1", "1a", "--1", "1,2", " 1"):
        assert not is_number(s), s


def test_depth_strings_with_and_without_tags():
    assert extract_depth_string(ANSWER) == ["<DEPTH_1><DEPTH_27>"]
    assert extract_depth_string(ANSWER, include_tags=True) == ["<DEPTH_START><DEPTH_1><DEPTH_27><DEPTH_END>"]
    two = "<DEPTH_START>a\nb<DEPTH_END> x <DEPTH_START>c<DEPTH_END>"
    assert extract_depth_string(two) == ["a\nb", "c"]


def test_trace_is_read_as_integer_points():
    assert extract_trace_lists(ANSWER) == [[[140, 225], [130, 212], [120, 200]]]


def test_trace_blocks_with_a_bad_point_are_dropped_whole():
    assert extract_trace_lists("[[1, 2], [3]]") == []
    assert extract_trace_lists("[[1, 2], [3, x]]") == []
    assert extract_trace_lists("[[1, 2, 3]]", point_len=3) == [[[1, 2, 3]]]
    assert extract_trace_lists("[[1.5, 2]]") == [[[1.5, 2]]]
    assert extract_trace_lists("[[1, 2]]", min_points=2) == []


def test_action_list_items_are_stripped_of_space_and_quotes():
    assert extract_action_token_lists(ANSWER) == [["ĠÐ«", "Ñģ", "ÑĤ", "Ñĥ", "ÑĦ", "ĠÐ¬", "ĠÐŃ"]]


def test_action_lists_skip_numeric_ascii_and_wrong_length_lists():
    text = "[1, 2] [a, b] [Ñģ, b] [Ñģ, ÑĤ, Ñĥ]"
    assert extract_action_token_lists(text) == [["Ñģ", "b"], ["Ñģ", "ÑĤ", "Ñĥ"]]
    assert extract_action_token_lists(text, only_len=3) == [["Ñģ", "ÑĤ", "Ñĥ"]]
    assert extract_action_token_lists(text, require_non_ascii=False) == [["a", "b"], ["Ñģ", "b"], ["Ñģ", "ÑĤ", "Ñĥ"]]


def test_action_chunks_are_read_as_their_inner_lists():
    text = "[[Ñģ, ÑĤ], [Ñĥ, ÑĦ]]"
    assert extract_action_token_lists(text) == [["Ñģ", "ÑĤ"], ["Ñĥ", "ÑĦ"]]


class StandInVocab:
    """A stand-in for a tokenizer's symbol table (only what the parser touches)."""

    vocab_size = 10

    def convert_tokens_to_ids(self, tokens):
        table = {"Ñģ": 9, "ÑĤ": 8, "Ñĥ": 7}
        return [table.get(t) for t in tokens]


def test_unknown_symbols_map_to_vocab_size_like_molmoact():
    assert extract_action_id_lists("[Ñģ, ÑĤ, ??]", StandInVocab(), only_len=3) == [[9, 8, 10]]


def test_symbols_the_parser_cannot_read_back_are_named():
    assert check_action_symbol("ĠÐ«") is None
    assert check_action_symbol("a,b") == "contains ','"
    assert check_action_symbol("]") == "contains ']'"
    assert check_action_symbol("x ") is not None
    assert check_action_symbol("'x") is not None
    assert check_action_symbol("") is not None


def test_a_list_of_ascii_symbols_is_not_readable():
    assert not action_list_readable(["a", "b"])
    assert action_list_readable(["a", "Ñģ"])
    assert not action_list_readable(["1", "2"])
