"""The output checker: passes on a good output, and each corruption fails naming shard, key and field."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import output_factory as of
from armdata.pipeline.output.check import check_output, check_sample
from armdata.schemas.sample import INDEX_FILE, SHARDS_DIR, SampleAnnotation


@pytest.fixture(scope="module")
def good_output(tmp_path_factory) -> of.FactoryOutput:
    root = tmp_path_factory.mktemp("good")
    return of.write_output(root / "out", root / "models")


@pytest.fixture()
def output(good_output, tmp_path) -> of.FactoryOutput:
    """A private copy of the good output that a test may corrupt."""
    dst = tmp_path / "out"
    shutil.copytree(good_output.out_dir, dst)
    return of.FactoryOutput(
        dst, good_output.keys, good_output.shard_of, good_output.episodes, good_output.run
    )


def _only(report, **want):
    hits = [f for f in report.failures if all(getattr(f, k) == v for k, v in want.items())]
    assert hits, f"no failure matching {want}; got:\n" + "\n".join(map(str, report.failures))
    return hits


def test_check_passes_on_good_output(good_output):
    report = check_output(good_output.out_dir)
    assert report.ok, "\n".join(map(str, report.failures))
    assert (report.shards, report.samples, report.episodes) == (2, 30, 3)
    assert report.notes == []  # tokenizer loaded: symbols were checked too


def test_depth_code_out_of_range_names_shard_key_field(output):
    key = output.keys[4]

    def edit(d):
        d["depth_codes"][7] = 128

    of.edit_annotation(output, key, edit)
    report = check_output(output.out_dir)
    hit = _only(report, key=key, field="depth_codes", kind="out_of_range")[0]
    assert hit.shard == output.shard_of[key]
    assert "index 7" in hit.message
    assert {f.key for f in report.failures} == {key}  # nothing else is blamed


def test_truncated_jpeg_member_fails_with_shard_key_member(output):
    key = output.keys[-1]
    jpg = dict(of.read_samples(output.out_dir / SHARDS_DIR / output.shard_of[key]))[key]["jpg"]
    of.rewrite_sample(output, key, "jpg", jpg[: len(jpg) // 3])
    report = check_output(output.out_dir)
    _only(report, shard=output.shard_of[key], key=key, field="jpg", kind="undecodable_image")


def test_tar_changed_without_manifest_fails_sha256(output):
    key = output.keys[0]
    of.edit_annotation(output, key, lambda d: d.update(instruction="a different task"))  # manifest updated
    path = output.out_dir / SHARDS_DIR / output.shard_of[key]
    path.write_bytes(path.read_bytes() + b"\0" * 1024)  # tar trailer grows: bytes change, samples do not
    report = check_output(output.out_dir)
    _only(report, shard=path.name, field="manifest.sha256", kind="mismatch")
    _only(report, shard=path.name, field="manifest.num_bytes", kind="mismatch")
    # the instruction no longer matches the rendered text and the index
    _only(report, key=key, field="text.reasoning.prompt", kind="text_mismatch")
    _only(report, key=key, field="index.instruction", kind="mismatch")


def test_missing_member_is_named(output):
    key = next(k for k in output.keys if k.startswith("srcB__"))  # srcB has a wrist view
    assert "wrist.jpg" in dict(of.read_samples(output.out_dir / SHARDS_DIR / output.shard_of[key]))[key]
    of.rewrite_sample(output, key, "wrist.jpg", None)
    _only(check_output(output.out_dir), key=key, field="wrist.jpg", kind="missing_member")


def test_trace_point_outside_range_and_not_at_step(output):
    key = output.keys[1]

    def edit(d):
        d["trace_uv255"][0] = [d["trace_uv255"][0][0], 300]

    of.edit_annotation(output, key, edit)
    _only(check_output(output.out_dir), key=key, field="trace_uv255", kind="out_of_range")


def test_trace_that_does_not_follow_the_gripper_points_is_caught(output):
    key = output.keys[2]

    def edit(d):
        d["trace_uv255"][-1] = [0, 0]  # in range and first point intact: only the episode rebuild sees it

    of.edit_annotation(output, key, edit)
    report = check_output(output.out_dir)
    _only(report, key=key, field="trace_uv255", kind="trace_mismatch")


def test_trace_on_a_no_trace_step_is_a_flag_mismatch(output):
    ann = None
    for key in output.keys:
        members = dict(of.read_samples(output.out_dir / SHARDS_DIR / output.shard_of[key]))[key]
        ann = SampleAnnotation.from_json(members["json"])
        if ann.trace_uv255 is None:
            break
    assert ann is not None and ann.trace_uv255 is None and "no_trace" in ann.flags
    of.edit_annotation(output, ann.key, lambda d: d.update(trace_uv255=[[1, 1]]))
    _only(check_output(output.out_dir), key=ann.key, field="trace_uv255", kind="flag_mismatch")


def test_action_id_outside_last_256_fails(output):
    key = output.keys[5]

    def edit(d):
        d["action"]["ids"][2] = d["action"]["vocab_size"] - 300

    of.edit_annotation(output, key, edit)
    _only(check_output(output.out_dir), key=key, field="action.ids", kind="out_of_range")


def test_action_id_that_decodes_far_from_normalized_value_fails(output):
    key = output.keys[6]

    def edit(d):
        a = d["action"]
        a["ids"][0] = a["vocab_size"] - 1 if a["ids"][0] != a["vocab_size"] - 1 else a["vocab_size"] - 256
        a["bins"][0] = a["vocab_size"] - a["ids"][0]

    of.edit_annotation(output, key, edit)
    _only(check_output(output.out_dir), key=key, field="action.ids", kind="not_decodable")


def test_missing_template_text_fails(output):
    key = output.keys[7]
    of.edit_annotation(output, key, lambda d: d["text"].pop("trace_only"))
    _only(check_output(output.out_dir), key=key, field="text.trace_only", kind="missing_template")


def test_duplicate_key_across_shards_fails(output):
    key = output.keys[0]
    src = output.out_dir / SHARDS_DIR / output.shard_of[key]
    other = next(s for s in set(output.shard_of.values()) if s != src.name)
    samples = of.read_samples(output.out_dir / SHARDS_DIR / other)
    samples.append((key, dict(of.read_samples(src))[key]))
    of._write_tar(output.out_dir / SHARDS_DIR / other, samples)
    of.write_manifest(output.out_dir / SHARDS_DIR / other, samples)
    report = check_output(output.out_dir)
    _only(report, key=key, field="key", kind="duplicate_key")


def test_index_row_disagreeing_with_sample_fails(output):
    table = pq.read_table(output.out_dir / INDEX_FILE).to_pylist()
    table[3]["step"] = 99
    pq.write_table(pa.Table.from_pylist(table), output.out_dir / INDEX_FILE)
    _only(check_output(output.out_dir), key=table[3]["key"], field="index.step", kind="mismatch")


def test_missing_shard_is_named(output):
    (output.out_dir / SHARDS_DIR / "armdata-00001-of-00002.tar").unlink()
    report = check_output(output.out_dir)
    _only(report, shard="armdata-00001-of-00002.tar", field="shard", kind="missing")  # its manifest is left
    _only(report, key=output.keys[-1], field="index.key", kind="unknown_key")


def test_absent_shard_without_dead_letters_fails_and_with_them_is_noted(output):
    (output.out_dir / SHARDS_DIR / "armdata-00001-of-00002.tar").unlink()
    (output.out_dir / SHARDS_DIR / "armdata-00001-of-00002.json").unlink()
    report = check_output(output.out_dir)
    assert not any(f.field == "shard" for f in report.failures)
    assert any("armdata-00001-of-00002.tar is absent" in n for n in report.notes)
    (output.out_dir / "failures.jsonl").write_text("")
    _only(check_output(output.out_dir), shard="armdata-00001-of-00002.tar", field="shard", kind="missing")


def test_check_sample_on_good_members_is_empty_and_names_key(good_output):
    path = good_output.out_dir / SHARDS_DIR / good_output.shard_of[good_output.keys[0]]
    key, members = of.read_samples(path)[0]
    assert check_sample(None, members, shard=path.name, key=key) == []
    members = {**members, "json": members["json"].replace(b'"step":0', b'"step":1')}
    fails = check_sample(None, members, shard=path.name, key=key)
    assert fails and all(f.key == key and f.shard == path.name for f in fails)
    assert any(f.field == "key" for f in fails)
