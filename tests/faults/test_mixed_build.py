"""One `armdata build` over seven small sources, each holding episodes with one fault apiece, answers most cases:
every bad episode is one dead letter naming source, episode, step and field; every good episode is written exactly
once; the exit status follows --max-failure-fraction; `armdata check` accepts what `build` wrote.

Sources (3 steps an episode unless said):
  cams     JPEG cameras: truncated primary JPEG, garbled extra camera, truncated unused camera, an action stored
           8 wide, a record without its action key
  acts     NaN in each of the 7 action dimensions, +inf, -inf gripper
  text     empty, placeholder and blank instructions (checks: default skip)
  textkeep the same data with checks.empty_instruction: keep-with-flag
  lengths  a 0-step and a 1-step episode
  black    an all-black primary camera, a constant grey extra camera
  cut      two shards, the first cut short in its third record
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import inject
import rlds_factory
from faultkit import models, private_cache, run_cli, with_hint  # noqa: F401 (fixtures)

NAN, INF = float("nan"), float("inf")


@dataclass
class Mixed:
    out: Path
    rc: int
    err: str
    failures: list[dict]
    stats_failures: list[dict]
    samples: dict[str, dict]
    sample_keys: list[str]  # every key in every shard, repeats kept
    sources: dict[str, Path]


def _key(split_key: str, step: int, source: str) -> str:
    return f"{source}__{split_key}__{step:05d}"


def _ep(i: int, shard: int = 0) -> str:
    return f"train-{shard:05d}-{i:06d}"


def _write_sources(root: Path) -> dict[str, Path]:
    srcs: dict[str, Path] = {}

    cams = rlds_factory.bridge_like(root / "cams", name="cams", num_steps=[3] * 6, image_encoding="jpeg")
    inject.edit_episodes(cams.builder_dir, {
        1: inject.truncate_jpeg("observation/image_0", 1),
        2: inject.garble_image("observation/image_1", 2),
        3: inject.truncate_jpeg("observation/image_3", 0),  # a camera the source does not use: never decoded
        4: inject.widen_action(),
        5: inject.drop_key("steps/action"),
    })
    srcs["cams"] = rlds_factory.write_source(root, with_hint(cams.source))

    acts = rlds_factory.bridge_like(root / "acts", name="acts", num_steps=[3] * 10)
    edits = {1 + d: inject.set_action(d % 3, d, NAN) for d in range(7)}
    edits[8] = inject.set_action(1, 3, INF)
    edits[9] = inject.set_action(2, 6, -INF)  # would clip to a valid "closed" gripper if checked after clipping
    inject.edit_episodes(acts.builder_dir, edits)
    srcs["acts"] = rlds_factory.write_source(root, with_hint(acts.source))

    text = rlds_factory.bridge_like(root / "text", name="text", num_steps=[3] * 5,
                                    instruction_override={1: "", 2: "N/A", 3: "   "})
    srcs["text"] = rlds_factory.write_source(root, with_hint(text.source))
    keep = {**with_hint(text.source), "name": "textkeep", "checks": {"empty_instruction": "keep-with-flag"}}
    srcs["textkeep"] = rlds_factory.write_source(root, keep)

    lengths = rlds_factory.bridge_like(root / "lengths", name="lengths", num_steps=[3, 1, 3], empty_episode=0)
    srcs["lengths"] = rlds_factory.write_source(root, with_hint(lengths.source))

    black = rlds_factory.bridge_like(root / "black", name="black", num_steps=[3] * 3)
    inject.edit_episodes(black.builder_dir, {1: inject.constant_camera("observation/image_0", 0),
                                             2: inject.constant_camera("observation/image_1", 128)})
    srcs["black"] = rlds_factory.write_source(root, with_hint(black.source))

    cut = rlds_factory.bridge_like(root / "cut", name="cut", num_steps=[3] * 6)
    first, _ = inject.split_shards(cut.builder_dir, [3, 3])
    offsets = inject.record_offsets(first)
    data = first.read_bytes()
    first.write_bytes(data[: offsets[2] + (len(data) - offsets[2]) // 2])  # cut inside record 2
    srcs["cut"] = rlds_factory.write_source(root, with_hint(cut.source))
    return srcs


# What each source must write (episode key -> steps) and the dead letters it must produce:
# (episode key, step, field, kind).
GOOD = {
    "cams": {_ep(0): 3, _ep(3): 3},
    "acts": {_ep(0): 3},
    "text": {_ep(0): 3, _ep(4): 3},
    "textkeep": {_ep(i): 3 for i in range(5)},
    "lengths": {_ep(1): 1, _ep(2): 3},
    "black": {_ep(0): 3},
    "cut": {_ep(0): 3, _ep(1): 3, _ep(0, 1): 3, _ep(1, 1): 3, _ep(2, 1): 3},
}
DEAD = {
    "cams": [(_ep(1), 1, "observation/image_0", "corrupt_image"),
             (_ep(2), 2, "observation/image_1", "corrupt_image"),
             (_ep(4), None, "action", "bad_field"),
             (_ep(5), None, "action", "missing_field")],
    "acts": [(_ep(1 + d), d % 3, f"action[{d}:{n}]", "non_finite_action")
             for d, n in enumerate(("x", "y", "z", "roll", "pitch", "yaw", "gripper"))]
    + [(_ep(8), 1, "action[3:roll]", "non_finite_action"), (_ep(9), 2, "action[6:gripper]", "non_finite_action")],
    "text": [(_ep(i), None, "language_instruction", "empty_instruction") for i in (1, 2, 3)],
    "textkeep": [],
    "lengths": [(_ep(0), None, "steps", "empty_episode")],
    "black": [(_ep(1), None, "observation/image_0", "constant_camera"),
              (_ep(2), None, "observation/image_1", "constant_camera")],
    "cut": [(_ep(2), None, "record", "truncated_shard")],
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, models) -> Mixed:
    root = tmp_path_factory.mktemp("mixed")
    srcs = _write_sources(root / "data")
    out = root / "out"
    args = ["build", "--out", str(out), "--max-failure-fraction", "0.6", "--episodes-per-shard", "4", "--no-audit"]
    for p in srcs.values():
        args += ["--source", str(p)]
    res = run_cli(args + models.args())
    import webdataset as wds

    shards = sorted(glob.glob(str(out / "shards" / "*.tar")))
    keys, samples = [], {}
    for s in wds.WebDataset(shards, shardshuffle=False):
        keys.append(s["__key__"])
        samples[s["__key__"]] = s

    def lines(name):
        p = out / name
        return [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []

    return Mixed(out, res.rc, res.err, lines("failures.jsonl"), lines("stats_failures.jsonl"), samples, keys, srcs)


def test_build_exits_zero_within_the_failure_budget(mixed):
    bad = sum(len(v) for v in DEAD.values())
    total = bad + sum(len(v) for v in GOOD.values())
    assert bad / total <= 0.6
    assert mixed.rc == 0, mixed.err


@pytest.mark.parametrize("source", sorted(GOOD))
def test_every_good_episode_is_written_exactly_once(mixed, source):
    want = sorted(_key(ep, t, source) for ep, n in GOOD[source].items() for t in range(n))
    got = sorted(k for k in mixed.sample_keys if k.startswith(source + "__"))
    assert got == want


@pytest.mark.parametrize("source", sorted(DEAD))
def test_each_bad_episode_is_one_dead_letter_naming_step_and_field(mixed, source):
    got = [(f["episode"], f["step"], f["field"], f["kind"]) for f in mixed.failures if f["source"] == source]
    assert sorted(got, key=str) == sorted(DEAD[source], key=str)
    # The statistics step met the same bad episodes and wrote them to its own file.
    stats = sorted((f["episode"], f["kind"]) for f in mixed.stats_failures if f["source"] == source)
    assert stats == sorted((e, k) for e, _, _, k in DEAD[source])


def test_dead_letters_say_what_was_wrong(mixed):
    by = {(f["source"], f["episode"]): f for f in mixed.failures}
    assert "truncated JPEG" in by[("cams", _ep(1))]["message"]
    assert "-inf" in by[("acts", _ep(9))]["message"] and "raw" in by[("acts", _ep(9))]["message"]
    assert "'N/A'" in by[("text", _ep(2))]["message"]
    assert "[0, 0, 0]" in by[("black", _ep(1))]["message"]
    assert "cut short" in by[("cut", _ep(2))]["message"]


def test_kept_empty_instructions_carry_the_flag_and_check_accepts_the_output(mixed):
    for i in (1, 2, 3):
        ann = json.loads(mixed.samples[_key(_ep(i), 0, "textkeep")]["json"])
        assert "empty_instruction" in ann["flags"]
    ann = json.loads(mixed.samples[_key(_ep(0), 0, "textkeep")]["json"])
    assert "empty_instruction" not in ann["flags"]
    res = run_cli(["check", str(mixed.out)])
    assert res.rc == 0, res.out + res.err


def test_manifests_hold_a_sha256_per_member(mixed):
    mans = [json.loads(Path(p).read_text()) for p in glob.glob(str(mixed.out / "shards" / "*.json"))]
    members = {k: v for m in mans for k, v in m["members"].items()}
    assert sorted(members) == sorted(mixed.samples)
    key = _key(_ep(0), 0, "cams")
    assert set(members[key]) == {"jpg", "json", "image_1.jpg", "traj.png"}


def test_no_scratch_or_lock_is_left_after_success(mixed):
    left = [p for p in glob.glob(str(mixed.out / "**" / "*"), recursive=True) if ".tmp-" in os.path.basename(p)]
    assert left == []
    assert not (mixed.out / ".armdata.lock").exists()
    assert not glob.glob(str(mixed.out / ".stats-*"))


def test_a_byte_flipped_in_each_member_kind_is_named_by_sample_and_member(mixed, tmp_path):
    """One copy of the output, one byte flipped in the middle of a different sample's jpg, image_1.jpg, traj.png
    and json: `check` names each by shard, sample key and member."""
    import shutil
    import tarfile

    from armdata.pipeline.output.check import check_output

    out = tmp_path / "out"
    shutil.copytree(mixed.out, out)
    shard = sorted((out / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m.name, m.offset_data, m.size) for m in tar.getmembers()]
    keys = sorted({n.split(".", 1)[0] for n, _, _ in members})
    flips = {}
    for kind, key in zip(("jpg", "image_1.jpg", "traj.png", "json"), keys):
        name, off, size = next(m for m in members if m[0] == f"{key}.{kind}")
        flips[(key, kind)] = off + size // 2
    data = bytearray(shard.read_bytes())
    for pos in flips.values():
        data[pos] ^= 0x01
    shard.write_bytes(bytes(data))

    report = check_output(out, load_tokenizer=False)
    named = {(f.key, f.field) for f in report.failures if f.kind == "sha256_mismatch" and f.shard == shard.name}
    assert named == set(flips)
    assert res_line_names(report, shard.name)


def res_line_names(report, shard: str) -> bool:
    """The whole-file digest still fails too (the shard's own sha256)."""
    return any(f.field == "manifest.sha256" and f.shard == shard for f in report.failures)


def test_the_audit_counts_skipped_and_flagged_instructions_and_cameras(mixed, tmp_path):
    import shutil

    from armdata.pipeline.audit.report import compute_audit

    out = tmp_path / "out"
    shutil.copytree(mixed.out, out)
    summary = compute_audit(out, samples=4)["summary"]
    dead = summary["failures_by_kind"]
    assert dead["empty_instruction"] == 3 and dead["constant_camera"] == 2 and dead["corrupt_image"] == 2
    assert dead["non_finite_action"] == 9 and dead["truncated_shard"] == 1 and dead["empty_episode"] == 1
    assert summary["dead_letters"] == sum(len(v) for v in DEAD.values())
    assert summary["flags_by_kind"]["empty_instruction"] == 3 * 3  # textkeep: 3 flagged episodes x 3 steps
