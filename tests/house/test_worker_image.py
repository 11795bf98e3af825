"""The GPU worker image (Dockerfile) pins exactly what pyproject.toml pins. No Docker engine exists on the machines
that run these tests, so the image itself is not built here; this keeps its versions from drifting."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for d in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", d.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def _dockerfile_args() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text()
    args: dict[str, str] = {}
    for name, value in re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M):
        assert args.setdefault(name, value) == value, f"ARG {name} has two defaults"
    return args


def test_dockerfile_pins_equal_pyproject_pins():
    pins = _pyproject_pins()
    assert {"torch", "apache-beam", "tensorflow-cpu", "tensorflow-datasets", "webdataset"} <= set(pins)
    args = _dockerfile_args()
    for pkg, version in pins.items():
        arg = ("BEAM" if pkg == "apache-beam" else pkg.upper().replace("-", "_")) + "_VERSION"
        assert args.get(arg) == version, f"Dockerfile ARG {arg}={args.get(arg)} but pyproject pins {pkg}=={version}"
    text = (REPO / "Dockerfile").read_text()
    assert "FROM apache/beam_python3.11_sdk:${BEAM_VERSION}" in text
    for pkg, arg in re.findall(r'"([a-z0-9-]+)==\$\{(\w+)\}"', text):
        assert args[arg] == pins[pkg], (pkg, arg)


def test_dockerfile_installs_armdata_with_the_extras_that_exist():
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    text = (REPO / "Dockerfile").read_text()
    wanted = re.search(r'"/src\[([a-z0-9,-]+)\]"', text).group(1).split(",")
    assert set(wanted) <= extras and {"gcp", "aws"} <= set(wanted)
