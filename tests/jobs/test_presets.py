"""Runner presets: the whole annotate pipeline constructed (never submitted: no cloud or cluster exists here) with
the dataflow-gpu and flink presets, its options, the armdata wheel it stages and its graph's step names; and the
GPU discipline on this CPU-only machine (a worker on a GPU preset refuses to start without CUDA)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml

from armdata.beam_jobs.presets import PRESETS, apply_preset, preset_config
from armdata.schemas.errors import ArmdataError

REPO = Path(__file__).resolve().parents[2]
DATAFLOW_SITE = ["--project=my-project", "--region=us-central1", "--temp_location=gs://my-bucket/tmp",
                 "--sdk_container_image=us-docker.pkg.dev/my-project/armdata/worker-gpu:0.1.0"]
IMAGE = "ghcr.io/example/armdata-worker:0.1.0"


@pytest.fixture(scope="module")
def job_inputs(bridge_debug_dir, tmp_path_factory):
    from armdata.annotators.actions.tokenizer import make_test_tokenizer
    from armdata.annotators.depth.random_init import save_random_depth_anything
    from armdata.schemas.source import load_source

    d = tmp_path_factory.mktemp("preset-job")
    spec = yaml.safe_load((REPO / "sources" / "bridge_debug.yaml").read_text())
    spec["data"]["dir"] = str(bridge_debug_dir)
    spec["locator_hint"] = {"region": [16, 0, 48, 24]}
    (d / "bridge_debug.yaml").write_text(yaml.safe_dump(spec))
    tiny = save_random_depth_anything(d / "tiny-da", arch="tiny", seed=0)
    tok = make_test_tokenizer(d / "tok")
    from depth_factory import save_tiny_depth_tokenizer

    vae = save_tiny_depth_tokenizer(d / "vae.safetensors")
    return [load_source(d / "bridge_debug.yaml")], {"depth.model": str(tiny), "actions.tokenizer": str(tok),
                                                    "depth_tokenizer.checkpoint": str(vae)}, d


def _construct(preset: str, site: list[str], job_inputs, out: Path):
    from armdata.beam_jobs.annotate import annotate_pipeline
    from armdata.pipeline.stages.config import load_config

    sources, fields, _ = job_inputs
    cfg = load_config(None, None, **{**preset_config(preset), **fields})
    beam_args = apply_preset(preset, site)
    return annotate_pipeline(sources, str(out), cfg, {"bridge_debug": {}}, beam_args), cfg


def _step_names(p) -> set[str]:
    return {t.unique_name for t in p.to_runner_api().components.transforms.values()}


EXPECTED_STEPS = {"ListShards[bridge_debug]", "ReadRecords[bridge_debug]", "Spread[bridge_debug]",
                  "Standardize[bridge_debug]", "Depth", "DepthCodes", "Trace", "Samples", "ByShard", "WriteShards",
                  "FailureBudget", "WriteFailures/Write", "Finish"}


def _staged_wheel(opts) -> Path:
    from apache_beam.options.pipeline_options import SetupOptions

    packages = opts.view_as(SetupOptions).extra_packages
    assert packages and len(packages) == 1
    wheel = Path(packages[0])
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith("armdata-") and "armdata/beam_jobs/annotate.py" in names
    assert "armdata/pipeline/plan_costs.json" in names  # package data travels too
    return wheel


def test_dataflow_gpu_preset_builds_the_annotate_pipeline_with_gpu_options(job_inputs, tmp_path):
    from apache_beam.options.pipeline_options import DebugOptions, GoogleCloudOptions, StandardOptions, WorkerOptions

    p, cfg = _construct("dataflow-gpu", DATAFLOW_SITE, job_inputs, tmp_path / "out")
    opts = p.options
    assert opts.view_as(StandardOptions).runner == "DataflowRunner"
    service = opts.view_as(GoogleCloudOptions).dataflow_service_options
    assert service == ["worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"]
    assert opts.view_as(GoogleCloudOptions).project == "my-project"
    workers = opts.view_as(WorkerOptions)
    assert workers.machine_type == "n1-standard-8" and workers.sdk_container_image.endswith("worker-gpu:0.1.0")
    debug = opts.view_as(DebugOptions)
    assert debug.number_of_worker_harness_threads == 4
    assert "no_use_multiple_sdk_containers" in debug.experiments
    _staged_wheel(opts)
    assert cfg.depth.device == "cuda" and cfg.require_cuda
    assert EXPECTED_STEPS <= _step_names(p)


def test_flink_preset_builds_the_annotate_pipeline_for_docker_workers(job_inputs, tmp_path):
    from apache_beam.options.pipeline_options import FlinkRunnerOptions, PortableOptions, StandardOptions

    p, cfg = _construct("flink", [f"--environment_config={IMAGE}", "--flink_master=flink.example:8081"],
                        job_inputs, tmp_path / "out")
    opts = p.options
    assert opts.view_as(StandardOptions).runner == "FlinkRunner"
    assert opts.view_as(FlinkRunnerOptions).flink_master == "flink.example:8081"  # the flag beat the preset
    portable = opts.view_as(PortableOptions)
    assert portable.environment_type == "DOCKER" and portable.environment_config == IMAGE
    _staged_wheel(opts)
    assert cfg.depth.device == "cpu" and not cfg.require_cuda
    assert EXPECTED_STEPS <= _step_names(p)


def test_a_flag_overrides_the_preset_and_a_missing_site_option_is_named():
    args = apply_preset("dataflow-gpu", [*DATAFLOW_SITE, "--machine_type=a2-highgpu-1g",
                                         "--extra_package=dist/armdata-0.1.0-py3-none-any.whl"])
    assert "--machine_type=a2-highgpu-1g" in args and not any(a.startswith("--machine_type=n1") for a in args)
    assert [a for a in args if a.startswith("--extra_package")] == ["--extra_package=dist/armdata-0.1.0-py3-none-any.whl"]
    with pytest.raises(ArmdataError, match="--project=.*--sdk_container_image="):
        apply_preset("dataflow-gpu", ["--region=us-central1", "--temp_location=gs://b/tmp"])
    with pytest.raises(ArmdataError, match="unknown preset 'slurm'; known: local, dask, dataflow-gpu, flink, spark"):
        apply_preset("slurm", [])
    assert set(PRESETS) == {"local", "dask", "dataflow-gpu", "flink", "spark"}


def test_a_gpu_preset_worker_refuses_to_start_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from armdata.beam_jobs.annotate import BatchedStageFn

    class StandInStage:  # never loaded: the check comes first
        def setup(self):
            raise AssertionError("the model must not load on a GPU preset without CUDA")

    with pytest.raises(RuntimeError, match="CUDA is not visible on this worker"):
        BatchedStageFn(StandInStage(), "depth", require_cuda=True).setup()
