"""Every trace option is reachable from the command line and the config; a model family whose optional extra is
missing fails with an error naming the extra; an unknown --flag is an error naming the closest armdata flag, never
handed silently to Beam."""

from __future__ import annotations

import importlib.util

import pytest

from armdata.beam_jobs.annotate import add_config_flags, config_from_args
from armdata.beam_jobs.common import beam_option_names, check_beam_args
from armdata.cli import main
from armdata.pipeline.stages.annotate import TraceStageRunner
from armdata.schemas.errors import ArmdataError, MissingExtraError
from armdata.schemas.source import resolve_source


def _args(argv):
    import argparse

    p = argparse.ArgumentParser()
    add_config_flags(p)
    return p.parse_args(["--source", "sample", "--out", "/tmp/x", *argv])


def test_trace_options_reach_the_trace_config_from_flags():
    cfg = config_from_args(_args([
        "--tracker", "cotracker", "--tracker-checkpoint", "/ckpt/scaled_offline.pth", "--tracker-device", "cuda",
        "--pointer-model", "allenai/Molmo-7B-D-0924", "--pointer-trust-remote-code", "--pointer-device", "cuda:1",
    ]))
    t = cfg.trace
    assert (t.tracker, t.tracker_checkpoint, t.tracker_device) == ("cotracker", "/ckpt/scaled_offline.pth", "cuda")
    assert (t.pointer_model, t.pointer_trust_remote_code, t.pointer_device) == (
        "allenai/Molmo-7B-D-0924", True, "cuda:1")
    # Unset flags leave the config's defaults (and the file's values) alone.
    assert config_from_args(_args([])).trace.pointer_trust_remote_code is False


def test_trace_options_reach_the_trace_config_from_set_and_the_runner_passes_them_on():
    cfg = config_from_args(_args([
        "--set", "trace.pointer_trust_remote_code=true", "--set", "trace.pointer_device=cuda",
        "--set", "trace.tracker=lk", "--set", "trace.tracker_checkpoint=/c.pth", "--set", "trace.tracker_device=cuda",
        "--set", "trace.disagreement_px=9", "--set", "trace.pointer_model=m",
    ]))
    runner = TraceStageRunner(cfg, [resolve_source("sample")])
    tc = runner.trace_config("pointer")
    assert tc.pointer_trust_remote_code is True and tc.pointer_device == "cuda"
    assert tc.tracker_checkpoint == "/c.pth" and tc.tracker_device == "cuda" and tc.disagreement_px == 9.0


def _run(argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("cotracker") is not None, reason="cotracker is installed here")
def test_cotracker_without_its_extra_names_the_extra(tmp_path, capsys):
    (tmp_path / "scaled_offline.pth").write_bytes(b"")
    rc, err = _run(["annotate", "--source", "sample", "--out", str(tmp_path), "--tracker", "cotracker",
                    "--tracker-checkpoint", str(tmp_path / "scaled_offline.pth")], capsys)
    assert rc == 2
    assert "needs the optional extra [cotracker]" in err and "pip install 'armdata[cotracker]'" in err
    assert "git+https://github.com/facebookresearch/co-tracker" in err


def test_cotracker_without_a_checkpoint_names_the_flag(tmp_path, capsys, monkeypatch):
    # The driver's check, with the extra present or not: the checkpoint's absence is named either way.
    from armdata.annotators.track.cotracker import check_checkpoint

    with pytest.raises(ArmdataError, match="--tracker-checkpoint PATH"):
        check_checkpoint(None)
    with pytest.raises(ArmdataError, match="checkpoint not found: '/nope.pth'.*--tracker-checkpoint"):
        check_checkpoint("/nope.pth")


def test_sam2_without_a_checkpoint_names_the_flag(tmp_path, capsys):
    rc, err = _run(["annotate", "--source", "sample", "--out", str(tmp_path), "--tracker", "sam2"], capsys)
    assert rc == 2 and "the sam2 tracker needs a model: --tracker-checkpoint" in err


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_sam2_and_pointer_without_torchvision_name_their_extras(tmp_path, capsys):
    rc, err = _run(["annotate", "--source", "sample", "--out", str(tmp_path), "--tracker", "sam2",
                    "--tracker-checkpoint", "facebook/sam2.1-hiera-tiny"], capsys)
    assert rc == 2 and "needs the optional extra [sam2] (missing: torchvision)" in err
    rc, err = _run(["annotate", "--source", "sample", "--out", str(tmp_path), "--locator", "pointer",
                    "--pointer-model", "allenai/Molmo-7B-D-0924", "--pointer-trust-remote-code"], capsys)
    assert rc == 2 and "needs the optional extra [molmo]" in err
    with pytest.raises(MissingExtraError) as e:
        from armdata.annotators.extras import require_extra

        require_extra("molmo", "x")
    assert e.value.extra == "molmo" and "torchvision" in e.value.missing


def test_pointer_without_a_model_is_a_named_error(tmp_path, capsys):
    rc, err = _run(["annotate", "--source", "sample", "--out", str(tmp_path), "--locator", "pointer"], capsys)
    assert rc == 2 and "--pointer-model" in err


def test_unknown_tracker_is_a_named_error(tmp_path, capsys):
    rc, err = _run(["annotate", "--source", "sample", "--out", str(tmp_path), "--tracker", "tapir"], capsys)
    assert rc == 2 and "unknown tracker 'tapir'" in err and "known: " in err and "lk" in err


def test_unknown_flag_names_the_closest_armdata_flag_and_never_reaches_beam(tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = _run(["annotate", "--source", "sample", "--out", str(out), "--pointer_trust_remote_code"], capsys)
    assert rc == 2 and "unknown flag --pointer_trust_remote_code: did you mean --pointer-trust-remote-code?" in err
    rc, err = _run(["build", "--source", "sample", "--out", str(out), "--tracker-chekpoint", "x.pth"], capsys)
    assert rc == 2 and "did you mean --tracker-checkpoint?" in err
    rc, err = _run(["stats", "--source", "sample", "--out", str(out), "--runer=DirectRunner"], capsys)
    assert rc == 2 and "did you mean the Beam option --runner?" in err
    assert not out.exists()  # nothing ran


def test_beam_options_come_from_beam_and_pass():
    names = beam_option_names()
    # A few of Beam's own options across its option classes (standard, Google Cloud, worker, direct, S3, Flink).
    for n in ("--runner", "--project", "--temp_location", "--sdk_container_image", "--direct_num_workers",
              "--direct_running_mode", "--s3_endpoint_url", "--flink_master", "--extra_package"):
        assert n in names
    check_beam_args(["--runner=DataflowRunner", "--project", "P", "--region", "R", "--direct_num_workers", "2",
                     "--experiments=use_runner_v2", "-1"], ["--source"])
    with pytest.raises(ArmdataError, match="neither an armdata flag"):
        check_beam_args(["--zzqqxx"], ["--source"])


def test_tracker_auto_is_cotracker_where_installed_with_a_checkpoint_else_hybrid():
    from armdata.annotators.track import resolve_tracker
    from armdata.pipeline.stages.trace import TraceConfig, build_tracker

    installed = importlib.util.find_spec("cotracker") is not None
    assert resolve_tracker("auto", None) == "hybrid"
    assert resolve_tracker("auto", "/c/scaled_offline.pth") == ("cotracker" if installed else "hybrid")
    assert resolve_tracker("lk", "/c/scaled_offline.pth") == "lk"
    assert build_tracker(TraceConfig(tracker="auto")).name == "hybrid"
    cfg = config_from_args(_args([]))
    assert cfg.trace.tracker == "auto"
    assert TraceStageRunner(cfg, [resolve_source("sample")]).trace_config("projection").tracker == "hybrid"
