"""Runner presets (``--preset local|dask|dataflow-gpu|flink|spark``): the Beam options a user would otherwise look
up, and the armdata settings that go with them. Every option stays overridable: a flag given on the command line
wins over the preset's value for that option.

Workers of Dataflow, Flink and Spark need armdata: unless the command line names an ``--extra_package`` or
``--setup_file``, the job stages a wheel built from this checkout (``stage_armdata``), so workers run the code that
launched them (on top of a worker image that carries the pinned stack, see ``Dockerfile``). Dask workers import
armdata from their own environment (the cluster's image or venv); nothing is staged to them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from armdata.schemas.errors import ArmdataError

logger = logging.getLogger(__name__)

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"  # Beam refuses the short name


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    beam: dict[str, str] = field(default_factory=dict)  # option (no dashes) -> value
    config: dict[str, object] = field(default_factory=dict)  # annotate config field (dotted) -> value
    required: tuple[str, ...] = ()  # options the user must give (site-specific: project, endpoints, image)
    stage: bool = False  # stage armdata to workers as a wheel
    gpu: bool = False  # workers must see CUDA (fail at start otherwise)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("local", "this machine, one worker process per core (Beam's FnApiRunner in multi-processing mode)",
           beam={"direct_running_mode": "multi_processing", "direct_num_workers": str(os.cpu_count() or 1)}),
    Preset("dask", "a Dask cluster (LocalCluster, dask-jobqueue on SLURM, dask-kubernetes); one task per input "
           "file or episode list partition", beam={"runner": DASK_RUNNER, "dask_partition_size": "1"},
           required=("dask_client_address",)),
    Preset("dataflow-gpu", "Google Cloud Dataflow, one NVIDIA T4 per worker with the driver installed, one SDK "
           "process (so one model copy) per GPU, 4 harness threads sharing it",
           beam={
               "runner": "DataflowRunner",
               # Accelerators are a Dataflow service option; the driver is installed by the service.
               "dataflow_service_options": "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver",
               "machine_type": "n1-standard-8",  # T4s attach to N1 machines; 8 vCPUs feed one GPU
               # One SDK process per VM: each process would load its own model copy onto the one GPU.
               "experiments": "no_use_multiple_sdk_containers",
               "number_of_worker_harness_threads": "4",  # threads share the model (Shared), CPU stages overlap
               "disk_size_gb": "100",  # the worker image (CUDA torch) is large
               "max_num_workers": "16",
           },
           config={"depth.device": "cuda", "require_cuda": True},
           required=("project", "region", "temp_location", "sdk_container_image"), stage=True, gpu=True),
    Preset("flink", "Apache Flink (portable runner): workers are Docker containers of the worker image",
           beam={"runner": "FlinkRunner", "flink_master": "localhost:8081", "environment_type": "DOCKER"},
           required=("environment_config",), stage=True),
    Preset("spark", "Apache Spark (portable runner): workers are Docker containers of the worker image",
           beam={"runner": "SparkRunner", "spark_master_url": "spark://localhost:7077", "environment_type": "DOCKER"},
           required=("environment_config",), stage=True),
)}


def _given(beam_args: list[str]) -> set[str]:
    return {a[2:].split("=", 1)[0] for a in beam_args if a.startswith("--")}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ArmdataError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def apply_preset(name: str | None, beam_args: list[str], stage: bool = True) -> list[str]:
    """``beam_args`` with the preset's options added where the command line does not give them.

    Raises ArmdataError naming every option the preset needs and the command line lacks. Stages armdata as a
    wheel for presets that need it (``stage=False`` leaves that out).
    """
    if not name:
        return list(beam_args)
    preset = get_preset(name)
    given = _given(beam_args)
    missing = [o for o in preset.required if o not in given]
    if missing:
        raise ArmdataError(f"preset {name} needs {' '.join('--' + o + '=...' for o in missing)} "
                           f"({preset.description})")
    out = [f"--{k}={v}" for k, v in preset.beam.items() if k not in given] + list(beam_args)
    if preset.stage and stage and not given & {"extra_package", "extra_packages", "setup_file"}:
        out.append(f"--extra_package={stage_armdata()}")
    return out


def preset_config(name: str | None) -> dict[str, object]:
    """The annotate config fields a preset sets (applied before ``--set``, which wins)."""
    return dict(get_preset(name).config) if name else {}


def checkout_root() -> Path | None:
    """The source checkout armdata runs from (a folder with pyproject.toml above the package), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "armdata").is_dir() else None


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted([root / "pyproject.toml", *(root / "armdata").rglob("*")]):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def stage_armdata(out_dir: str | None = None) -> str:
    """A wheel of armdata built from this checkout (``pip wheel --no-deps``), cached by a digest of its files.

    Workers install it over their image's pinned stack (``--extra_package``). Raises ArmdataError where armdata
    is not run from a checkout: then give ``--extra_package`` or use an image with armdata installed.
    """
    root = checkout_root()
    if root is None:
        raise ArmdataError("armdata is not run from a source checkout, so no wheel can be built to stage: pass "
                           "--extra_package=armdata-*.whl or --setup_file, or use a worker image with armdata")
    from armdata.cache import cache_root

    out = Path(out_dir) if out_dir else cache_root() / "wheels" / _tree_digest(root)
    wheels = sorted(out.glob("armdata-*.whl")) if out.is_dir() else []
    if wheels:
        return str(wheels[-1])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="armdata-wheel-") as tmp:
        # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
        src = Path(tmp) / "src"
        shutil.copytree(root / "armdata", src / "armdata", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
               str(src)]
        res = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(out.glob("armdata-*.whl"))
    if res.returncode != 0 or not wheels:
        raise ArmdataError(f"building the armdata wheel to stage failed: {res.stderr.strip()[-500:]}")
    logger.info("staging %s to the workers", wheels[-1])
    return str(wheels[-1])
