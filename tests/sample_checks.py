"""Checks shared by the tests that build outputs: every sample carries every stream in its valid range."""

from __future__ import annotations

from armdata.schemas.sample import SampleAnnotation


def check_sample_streams(ann: SampleAnnotation, templates: set[str]) -> None:
    assert len(ann.depth_codes) == 100 and all(0 <= c < 128 for c in ann.depth_codes)
    assert ann.trace_uv255 is not None and 1 <= len(ann.trace_uv255) <= 5
    assert all(0 <= x <= 255 for p in ann.trace_uv255 for x in p)
    v = ann.action.vocab_size
    assert len(ann.action.ids) == 7 and all(v - 256 <= i < v for i in ann.action.ids)
    assert set(ann.text) == templates
    assert all(t["prompt"] and t["answer"] for t in ann.text.values())
