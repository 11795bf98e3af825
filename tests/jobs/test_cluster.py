"""armdata on real remote storage and a real distributed engine, against an in-process run of the same job.

- S3: moto's server (a real S3 API over HTTP on 127.0.0.1) holds the real Bridge sample; ``armdata build`` reads
  the source from ``s3://`` and writes the output to ``s3://`` through Beam's S3 file system
  (``--s3_endpoint_url``); ``check`` and ``audit`` read the remote output.
- Dask: Beam's Dask runner on a ``distributed.LocalCluster`` with 2 worker processes runs the statistics and
  annotate jobs.
In both, the shards must equal the in-process runner's byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from armdata.cli import main

REPO = Path(__file__).resolve().parents[2]
BUCKET = "armdata-test"


def _source_spec(data_dir: str) -> dict:
    spec = yaml.safe_load((REPO / "sources" / "bridge_debug.yaml").read_text())
    spec["data"]["dir"] = data_dir
    spec["locator_hint"] = {"region": [16, 0, 48, 24]}  # as tests/jobs/test_build.py: no calibration in Bridge
    return spec


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[str]:
    """Flags for a tiny Depth Anything (real architecture, random weights) and a local Qwen2-style tokenizer."""
    from armdata.annotators.actions.tokenizer import make_test_tokenizer
    from armdata.annotators.depth.random_init import save_random_depth_anything

    from depth_factory import save_tiny_depth_tokenizer

    d = tmp_path_factory.mktemp("models")
    tiny = save_random_depth_anything(d / "tiny-da", arch="tiny", seed=0)
    tok = make_test_tokenizer(d / "tok")
    vae = save_tiny_depth_tokenizer(d / "vae.safetensors")
    return ["--depth-model", str(tiny), "--set", "depth.input_size=252", "--tokenizer", str(tok),
            "--depth-tokenizer", str(vae), "--episodes-per-shard", "8", "--no-audit"]


@pytest.fixture(scope="module")
def reference(bridge_debug_dir, models, tmp_path_factory) -> Path:
    """``armdata build`` of the Bridge sample on the in-process runner, local in and out."""
    d = tmp_path_factory.mktemp("reference")
    src = d / "bridge_debug.yaml"
    src.write_text(yaml.safe_dump(_source_spec(str(bridge_debug_dir))))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARMDATA_CACHE", str(d / "cache"))
        assert main(["build", "--source", str(src), "--out", str(d / "out"), *models]) == 0
    assert len(list((d / "out" / "shards").glob("*.tar"))) == 4
    return d / "out"


def _local_files(out: Path) -> dict[str, bytes]:
    names = sorted(p.name for p in (out / "shards").iterdir())
    files = {f"shards/{n}": (out / "shards" / n).read_bytes() for n in names}
    for n in ("dataset_statistics.json", "index.parquet"):
        files[n] = (out / n).read_bytes()
    return files


# ---------------------------------------------------------------------------------------------------------------
# S3 (moto server)


@pytest.fixture(scope="module")
def s3(bridge_debug_dir):
    """A moto S3 server on 127.0.0.1 holding the Bridge sample under s3://armdata-test/bridge_debug/1.0.0/."""
    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    mp = pytest.MonkeyPatch()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        mp.setenv(k, v)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    for f in sorted(Path(bridge_debug_dir).iterdir()):
        client.upload_file(str(f), BUCKET, f"bridge_debug/1.0.0/{f.name}")
    yield client, endpoint
    mp.undo()
    server.stop()


def test_build_reads_and_writes_s3_and_equals_the_local_run(s3, reference, models, tmp_path, monkeypatch):
    client, endpoint = s3
    spec = _source_spec(f"s3://{BUCKET}/bridge_debug/1.0.0")
    src = tmp_path / "bridge_debug_s3.yaml"
    src.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("ARMDATA_CACHE", str(tmp_path / "cache"))  # the statistics job reads S3 too
    out = f"s3://{BUCKET}/out/bridge"
    assert main(["build", "--source", str(src), "--out", out, *models, f"--s3_endpoint_url={endpoint}"]) == 0

    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="out/bridge/")["Contents"]
    keys = {o["Key"][len("out/bridge/"):] for o in listed}
    assert {"run.json", "README.md", "failures.jsonl", "index.parquet", "dataset_statistics.json"} <= keys
    assert not [k for k in keys if ".tmp-" in k], "a temporary name was left behind"
    expected = _local_files(reference)
    remote_shards = sorted(k for k in keys if k.startswith("shards/"))
    assert remote_shards == sorted(k for k in expected if k.startswith("shards/"))
    for name, data in expected.items():
        got = client.get_object(Bucket=BUCKET, Key=f"out/bridge/{name}")["Body"].read()
        assert got == data, f"{name} differs between the S3 run and the local run"

    # check and audit on the remote output (no Beam flags: the endpoint comes from boto3's environment)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    assert main(["check", out, "--no-tokenizer"]) == 0
    local = tmp_path / "audit-copy"
    assert main(["audit", out, "--local-copy", str(local), "--samples", "4"]) == 0
    assert (local / "audit" / "index.html").is_file()
    assert json.loads((local / "audit" / "audit.json").read_text())


def test_check_names_a_missing_remote_output(s3, monkeypatch, capsys):
    _, endpoint = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    assert main(["check", f"s3://{BUCKET}/no-such-output", "--no-tokenizer"]) == 1
    assert "no shards" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# Dask (LocalCluster, 2 worker processes)


DASK_RUNNER = "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


def test_build_on_dask_local_cluster_equals_the_in_process_run(dask_cluster, bridge_debug_dir, reference, models,
                                                               tmp_path, monkeypatch):
    src = tmp_path / "bridge_debug.yaml"
    src.write_text(yaml.safe_dump(_source_spec(str(bridge_debug_dir))))
    monkeypatch.setenv("ARMDATA_CACHE", str(tmp_path / "cache"))  # the statistics job runs on Dask too
    out = tmp_path / "out"
    assert main(["build", "--source", str(src), "--out", str(out), *models, DASK_RUNNER,
                 f"--dask_client_address={dask_cluster}"]) == 0
    got, expected = _local_files(out), _local_files(reference)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], f"{name} differs between the Dask run and the in-process run"
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["episodes_annotated"] == 25 and run["counts"]["samples"] == 250
