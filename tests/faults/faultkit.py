"""Shared pieces of the fault-injection suite: tiny models saved once, and the real CLI run in this process.
Test modules import the fixtures by name (``from faultkit import models, private_cache``); there is no conftest.py
here, so ``from conftest import ...`` elsewhere keeps meaning tests/conftest.py.

Every case writes a small RLDS dataset with tests/rlds_factory.py, injects one fault into its stored bytes
(tests/faults/inject.py) and runs the real job on Beam's in-process runner. Datasets and runs are shared between
cases wherever one run can answer several questions (see test_mixed_build.py).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Models:
    tokenizer: str
    depth_model: str
    depth_tokenizer: str

    def args(self) -> list[str]:
        """Depth and tokenizer settings for sources without a depth camera (passed explicitly, as a real run must)."""
        return ["--tokenizer", self.tokenizer, "--set", f"depth.model={self.depth_model}",
                "--set", "depth.input_size=56", "--depth-tokenizer", self.depth_tokenizer]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    from armdata.annotators.actions.tokenizer import make_test_tokenizer
    from armdata.annotators.depth.random_init import save_random_depth_anything

    from depth_factory import save_tiny_depth_tokenizer

    d = tmp_path_factory.mktemp("fault-models")
    return Models(make_test_tokenizer(d / "tok"), str(save_random_depth_anything(d / "tiny-da", arch="tiny", seed=0)),
                  save_tiny_depth_tokenizer(d / "vae.safetensors"))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Statistics caches go to a temp folder (never the user's ~/.cache)."""
    old = os.environ.get("ARMDATA_CACHE")
    os.environ["ARMDATA_CACHE"] = str(tmp_path_factory.mktemp("armdata-cache"))
    yield
    if old is None:
        os.environ.pop("ARMDATA_CACHE", None)
    else:
        os.environ["ARMDATA_CACHE"] = old


@dataclass
class CliResult:
    rc: int
    out: str
    err: str


def run_cli(args: list[str]) -> CliResult:
    """``armdata ARGS`` in this process (the real entry point, exit status and stderr as a user sees them)."""
    from armdata.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as e:  # argparse errors
            rc = int(e.code or 0)
    return CliResult(rc, out.getvalue(), err.getvalue())


def with_hint(source: dict) -> dict:
    """Factory sources have no calibration: seed the trace from a fixed pixel."""
    return {**source, "locator_hint": {"pixel": [10, 8]}}
