"""Point-tag parsing of both Molmo generations, including malformed answers."""

from __future__ import annotations

import pytest

from armdata.annotators.locate.parse import MOLMO1, MOLMO2, choose_point, parse_points

W, H = 320, 256


def test_molmo1_single_point_in_percent():
    out = parse_points('<point x="50.0" y="25.5" alt="robot gripper">robot gripper</point>', W, H)
    assert len(out.points) == 1 and out.dropped == 0
    p = out.points[0]
    assert p.fmt == MOLMO1
    assert p.u == pytest.approx(160.0) and p.v == pytest.approx(0.255 * H)


def test_molmo1_points_tag_with_numbered_attributes():
    out = parse_points('<points x1="10" y1="20" x2="12.5" y2="21" alt="robot gripper">robot gripper</points>', W, H)
    assert [(round(p.u, 2), round(p.v, 2)) for p in out.points] == [(32.0, 51.2), (40.0, 53.76)]


def test_molmo2_coords_in_thousandths():
    text = '<points alt="robot gripper" coords="1 1 461 527">robot gripper</points>'
    out = parse_points(text, W, H)
    assert len(out.points) == 1
    p = out.points[0]
    assert p.fmt == MOLMO2 and p.image_index == 1
    assert p.u == pytest.approx(0.461 * W) and p.v == pytest.approx(0.527 * H)


def test_molmo2_two_points_and_second_image_group():
    text = '<points coords="1 1 461 527 2 481 521;2 1 100 0900">g</points>'
    out = parse_points(text, W, H)
    assert [p.image_index for p in out.points] == [1, 1, 2]
    assert out.points[2].v == pytest.approx(0.9 * H)


def test_answer_without_point_is_no_point():
    out = parse_points("There is no robot gripper in this image.", W, H)
    assert out.points == [] and out.dropped == 0
    assert choose_point(out, merge_px=10) == (None, "no_point")


def test_out_of_range_values_are_dropped():
    m1 = parse_points('<point x="130.0" y="25" alt="g">g</point>', W, H)
    m2 = parse_points('<points coords="1 1 1200 527">g</points>', W, H)
    for out in (m1, m2):
        assert out.points == [] and out.dropped == 1
        assert choose_point(out, merge_px=10) == (None, "out_of_range")


def test_malformed_tags_are_dropped_not_guessed():
    for text in (
        '<point x="abc" y="20">g</point>',
        '<point x="50">g</point>',
        '<points coords="1 1 461">g</points>',
        "<point>g</point>",
    ):
        out = parse_points(text, W, H)
        assert out.points == [], text
        uv, reason = choose_point(out, merge_px=10)
        assert uv is None and reason in ("malformed", "no_point"), (text, reason)


def test_incomplete_triplet_keeps_the_complete_ones():
    out = parse_points('<points coords="1 1 461 527 2 481">g</points>', W, H)
    assert len(out.points) == 1 and out.dropped == 1


def test_two_far_points_are_ambiguous_and_close_points_merge():
    far = parse_points('<points x1="10" y1="10" x2="90" y2="90" alt="g">g</points>', W, H)
    assert choose_point(far, merge_px=10) == (None, "ambiguous_2_points")
    near = parse_points('<points coords="1 1 500 500 2 510 500">g</points>', W, H)
    uv, reason = choose_point(near, merge_px=10)
    assert reason == "merged_2_points"
    assert uv == pytest.approx((0.505 * W, 0.5 * H))


def test_point_at_100_percent_lands_on_last_pixel():
    out = parse_points('<point x="100" y="100" alt="g">g</point>', W, H)
    assert (out.points[0].u, out.points[0].v) == (W - 1, H - 1)


def test_text_around_tag_and_case_are_tolerated():
    out = parse_points('Sure! <POINT X="25" Y="75" ALT="g">g</POINT> done', W, H)
    assert len(out.points) == 1 and out.points[0].u == pytest.approx(80.0)
