"""User mistakes and untrusted files: every one is a single armdata error line and exit status 2 (a traceback only
with -v), nothing runs that should not (no pickle payload, no YAML object tag is executed), and nothing is
written before the mistake is found. Also the failure budget: all-bad data stops early, one 0-step episode in 24
does not fail a build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import inject
import rlds_factory
from faultkit import models, private_cache, run_cli, with_hint  # noqa: F401 (fixtures)


class Payload:
    """Pickles to a call that creates a marker file: loading it must never execute it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A good 2-episode Bridge-like source (shared by the cases that must fail before reading it)."""
    root = tmp_path_factory.mktemp("small")
    ds = rlds_factory.bridge_like(root / "data", num_steps=[2, 2])
    return root, with_hint(ds.source)


def _one_error_line(res, *needles: str) -> str:
    assert res.rc == 2, (res.rc, res.err[-2000:])
    assert "Traceback" not in res.err, res.err[-2000:]
    lines = [ln for ln in res.err.splitlines() if ln.startswith("armdata ")]
    assert len(lines) == 1, res.err[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _write(folder: Path, name: str, source: dict) -> Path:
    return rlds_factory.write_source(folder, source, name)


CASES = {
    # name: (change to the source mapping, words the error must hold)
    "typo_top_level": (lambda s: {**{k: v for k, v in s.items() if k != "cameras"}, "camera": s["cameras"]},
                       ["camera", "unknown setting"]),
    "typo_nested": (lambda s: {**s, "action": {**s["action"], "gripper": {**s["action"]["gripper"], "indx": 6}}},
                    ["action.gripper.indx", "unknown setting"]),
    "wrong_type": (lambda s: {**s, "control_hz": "fast"}, ["control_hz"]),
    "wrong_type_list": (lambda s: {**s, "cameras": {**s["cameras"], "extra": "observation/image_1"}},
                        ["cameras.extra"]),
    "field_path_typo": (lambda s: {**s, "cameras": {**s["cameras"], "primary": "observation/image_9"}},
                        ["cameras.primary", "observation/image_0"]),
    "policy_typo": (lambda s: {**s, "checks": {"empty_instruction": "ignore"}}, ["checks.empty_instruction"]),
    # Keys unique by construction: '__' separates key parts.
    "split_with_separator": (lambda s: {**s, "data": {**s["data"], "split": "s__x"}}, ["data.split", "'__'"]),
    "split_with_dot": (lambda s: {**s, "data": {**s["data"], "split": "train.v2"}}, ["data.split"]),
    "name_with_separator": (lambda s: {**s, "name": "r__s"}, ["name", "'__'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_source_file_mistakes_are_one_line_before_anything_runs(small, tmp_path, case):
    root, source = small
    change, needles = CASES[case]
    path = _write(tmp_path, "src.yaml", change(json.loads(json.dumps(source))))
    out = tmp_path / "out"
    res = run_cli(["build", "--source", str(path), "--out", str(out), "--no-audit"])
    _one_error_line(res, *needles)
    assert not (out / "shards").exists()


def test_duplicate_source_names_are_refused_before_anything_runs(small, tmp_path):
    _, source = small
    a = _write(tmp_path, "a.yaml", source)
    b = _write(tmp_path, "b.yaml", source)
    out = tmp_path / "out"
    for cmd in ("build", "annotate", "stats"):
        res = run_cli([cmd, "--source", str(a), "--source", str(b), "--out", str(out)])
        _one_error_line(res, source["name"])
    assert not (out / "shards").exists() and not (out / "dataset_statistics.json").exists()


def test_duplicate_episode_ids_are_refused():
    from armdata.beam_jobs.annotate import check_unique_episodes
    from armdata.schemas.errors import ArmdataError

    with pytest.raises(ArmdataError, match="occur twice"):
        check_unique_episodes(["r__train-00000-000000", "r__train-00000-000001", "r__train-00000-000000"])


def test_yaml_object_tags_are_refused_and_never_run(small, tmp_path):
    _, source = small
    marker = tmp_path / "PWNED"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    src_text = yaml.safe_dump(source).replace("description:", f"description: {tag}\nx_description:", 1)
    src_path = tmp_path / "tagged_source.yaml"
    src_path.write_text(src_text)
    _one_error_line(run_cli(["build", "--source", str(src_path), "--out", str(tmp_path / "o1")]),
                    "tagged_source.yaml", "YAML")
    good = _write(tmp_path, "good.yaml", source)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"depth:\n  model: {tag}\n")
    _one_error_line(run_cli(["build", "--source", str(good), "--out", str(tmp_path / "o2"), "--config", str(cfg)]),
                    "config.yaml", "YAML")
    _one_error_line(run_cli(["build", "--source", str(good), "--out", str(tmp_path / "o3"),
                             "--set", f"depth.model={tag}"]), "--set", "YAML")
    assert not marker.exists()


def test_config_mistakes_are_one_line(small, tmp_path):
    _, source = small
    good = _write(tmp_path, "good.yaml", source)
    bad_yaml = tmp_path / "broken.yaml"
    bad_yaml.write_text("depth: [unclosed\n")
    cases = [
        (["--config", str(bad_yaml)], ["broken.yaml", "not valid YAML"]),
        (["--config", str(tmp_path / "absent.yaml")], ["absent.yaml", "cannot read"]),
        (["--set", "depth.model=[unclosed"], ["--set", "not valid YAML"]),
        (["--set", "depth.modle=x"], ["depth.modle"]),
        (["--set", "nodot"], ["section.field=value"]),
    ]
    for extra, needles in cases:
        _one_error_line(run_cli(["build", "--source", str(good), "--out", str(tmp_path / "o")] + extra), *needles)


def test_verbose_shows_the_traceback(small, tmp_path):
    _, source = small
    path = _write(tmp_path, "src.yaml", {**source, "control_hz": "fast"})
    res = run_cli(["-v", "build", "--source", str(path), "--out", str(tmp_path / "o")])
    assert res.rc == 2 and "Traceback" in res.err and "armdata build: error:" in res.err


def test_pickled_checkpoint_and_model_folder_are_refused_without_running_them(small, tmp_path, models):
    from armdata.annotators.depth.random_init import save_random_depth_anything

    _, source = small
    good = _write(tmp_path, "good.yaml", source)
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "vae.pt"
    torch.save({"model": Payload(marker)}, ckpt)
    res = run_cli(["build", "--source", str(good), "--out", str(tmp_path / "o1"), "--no-audit"] + models.args()
                  + ["--depth-tokenizer", str(ckpt)])
    _one_error_line(res, "vae.pt", "weights-only")

    folder = Path(save_random_depth_anything(tmp_path / "da", arch="tiny", seed=0))
    for f in folder.glob("*.safetensors"):
        f.unlink()
    torch.save({"w": Payload(marker)}, folder / "pytorch_model.bin")
    res = run_cli(["build", "--source", str(good), "--out", str(tmp_path / "o2"), "--no-audit",
                   "--tokenizer", models.tokenizer, "--set", f"depth.model={folder}", "--set", "depth.input_size=56",
                   "--depth-tokenizer", models.depth_tokenizer])
    _one_error_line(res, "cannot load", str(folder), "UnpicklingError")
    assert not marker.exists()


def test_all_bad_data_stops_early_within_the_budget(tmp_path, models):
    """A key missing from every record: the statistics step stops after the budget (5% of 16 episodes: none may
    fail) is spent, not after reading everything; one line names the reason and the field."""
    ds = rlds_factory.bridge_like(tmp_path / "data", num_steps=[2] * 16)
    inject.edit_episodes(ds.builder_dir, {i: inject.drop_key("steps/action") for i in range(16)})
    src = _write(tmp_path, "allbad.yaml", with_hint(ds.source))
    out = tmp_path / "out"
    res = run_cli(["build", "--source", str(src), "--out", str(out), "--no-audit"] + models.args())
    line = _one_error_line(res, "stopped early", "--max-failure-fraction", "field=action", "stats_failures.jsonl")
    assert "of 16 episodes" in line
    dead = [json.loads(x) for x in (out / "stats_failures.jsonl").read_text().splitlines()]
    assert 1 <= len(dead) < 16 and all(d["kind"] == "missing_field" and d["field"] == "action" for d in dead)
    assert not list((out / "shards").glob("*.tar")) if (out / "shards").exists() else True


def test_one_empty_episode_in_24_does_not_fail_the_build(tmp_path, models):
    ds = rlds_factory.bridge_like(tmp_path / "data", num_steps=[1] * 24, empty_episode=5, black_camera=False)
    src = _write(tmp_path, "one_empty.yaml", with_hint(ds.source))
    out = tmp_path / "out"
    res = run_cli(["build", "--source", str(src), "--out", str(out), "--no-audit"] + models.args())
    assert res.rc == 0, res.err[-2000:]
    dead = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert [(d["episode"], d["kind"]) for d in dead] == [("train-00000-000005", "empty_episode")]
    import pyarrow.parquet as pq

    assert pq.read_table(out / "index.parquet").num_rows == 23


def test_fail_policy_stops_the_job_at_the_first_such_episode(tmp_path, models):
    ds = rlds_factory.bridge_like(tmp_path / "data", num_steps=[2] * 4, instruction_override={2: "todo"})
    src = _write(tmp_path, "strict.yaml", {**with_hint(ds.source), "checks": {"empty_instruction": "fail"}})
    out = tmp_path / "out"
    res = run_cli(["build", "--source", str(src), "--out", str(out), "--no-audit", "--max-failure-fraction", "0.9"]
                  + models.args())
    _one_error_line(res, "episode=train-00000-000002", "checks.empty_instruction: fail", "'todo'")
    dead = [json.loads(x) for x in (out / "stats_failures.jsonl").read_text().splitlines()]
    assert [(d["episode"], d["kind"], d.get("fatal")) for d in dead] == [
        ("train-00000-000002", "empty_instruction", True)]
