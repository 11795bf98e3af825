"""The checker and the report on what the real annotate job writes for the built-in sample.

Runs ``armdata demo --no-audit`` (the whole chain, offline). Where the package's demo depth tokenizer has not
been generated yet, runs ``armdata build --source sample`` with a tiny depth VQ-VAE and the test tokenizer
instead: the same job, only the checkpoint differs. Then: ``armdata check`` passes; one member of one sample
corrupted on purpose fails naming the shard, the key and the field; the report shows the trace error against
the sample's ground truth. Slow (~40 s: one Beam job over 6 episodes x 40 steps).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import output_factory as of
from armdata import cli
from armdata.pipeline.audit.report import run_audit
from armdata.pipeline.output.check import check_output
from armdata.schemas.sample import SHARDS_DIR, SampleAnnotation


def _demo_asset_exists() -> bool:
    from armdata.schemas.errors import ArmdataError

    try:
        from armdata.annotators.depth.tokenizer import default_demo_tokenizer_path

        default_demo_tokenizer_path()
    except ArmdataError:
        return False
    return True


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    out = root / "out"
    if _demo_asset_exists():
        argv = ["demo", "--out", str(out), "--no-audit"]
    else:
        ckpt, tok = of.make_models(root / "models")
        argv = [
            "build",
            "--source",
            "sample",
            "--out",
            str(out),
            "--depth-tokenizer",
            ckpt,
            "--tokenizer",
            tok,
            "--episodes-per-shard",
            "2",
            "--no-audit",
        ]
    assert cli.main(argv) == 0
    return out


def test_check_passes_on_the_demo_output(demo_out):
    report = check_output(demo_out)
    assert report.ok, "\n".join(map(str, report.failures[:20]))
    assert report.samples > 0 and report.shards > 0
    assert not any("symbols not checked" in n for n in report.notes)


def test_corrupted_member_of_demo_output_fails_naming_shard_key_field(demo_out, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(demo_out, out)
    shard = sorted((out / SHARDS_DIR).glob("*.tar"))[-1]
    samples = of.read_samples(shard)
    key, members = samples[len(samples) // 2]
    d = json.loads(members["json"])
    d["depth_codes"][0] = 999
    members["json"] = json.dumps(d).encode()
    of._write_tar(shard, samples)  # the manifest is left as it was: its sha256 no longer matches either
    assert cli.main(["check", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"shard={shard.name} key={key} field=depth_codes: out_of_range" in printed
    assert f"shard={shard.name} key=None field=manifest.sha256: mismatch" in printed


def test_report_on_the_demo_shows_trace_error_against_ground_truth(demo_out):
    page = run_audit(demo_out, samples=4, seed=0)
    audit = json.loads((page.parent / "audit.json").read_text())
    te = audit["trace_error"]
    assert te["has_ground_truth"] and te["per_frame"]["n"] > 0 and te["per_trace_point"]["n"] > 0
    assert audit["summary"]["check_ok"]
    html = page.read_text()
    assert 'data-audit="trace_error.per_trace_point.mean"' in html
    first = next((demo_out / SHARDS_DIR).glob("*.tar"))
    ann = SampleAnnotation.from_json(of.read_samples(first)[0][1]["json"])
    assert ann.ground_truth.get("gripper_uv") is not None  # the sample carries its ground truth
