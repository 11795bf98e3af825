"""Shared fixtures: small RLDS datasets written on the fly (see tests/rlds_factory.py) and the real Bridge sample.

The factory datasets are session-scoped (writing one costs ~1-2 s) and must be treated as read-only; a test that
needs a variant (a NaN action, an empty episode) calls the factory itself into its own ``tmp_path``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rlds_factory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BRIDGE_DEBUG_DIR = Path(
    os.environ.get("ARMDATA_BRIDGE_DEBUG", REPO.parent / "shared" / "data" / "rlds" / "bridge_debug" / "1.0.0")
)


@pytest.fixture(scope="session")
def bridge_like_ds(tmp_path_factory) -> rlds_factory.FactoryDataset:
    """Bridge-like layout: flat action, absolute gripper, step Text instruction, a black image_3."""
    return rlds_factory.bridge_like(tmp_path_factory.mktemp("rlds_bridge_like"), num_steps=[6, 4, 5])


@pytest.fixture(scope="session")
def rt1_like_ds(tmp_path_factory) -> rlds_factory.FactoryDataset:
    """RT-1-like layout: nested action dict, relative gripper, instruction inside observation."""
    return rlds_factory.rt1_like(tmp_path_factory.mktemp("rlds_rt1_like"), num_steps=[7, 5, 8])


@pytest.fixture(scope="session")
def meta_instr_ds(tmp_path_factory) -> rlds_factory.FactoryDataset:
    """Instruction only in episode metadata; inverted absolute gripper (0 = open)."""
    return rlds_factory.metadata_instruction(tmp_path_factory.mktemp("rlds_meta_instr"), num_steps=[5, 3, 4])


@pytest.fixture(scope="session")
def bridge_debug_dir() -> Path:
    """The real BridgeData V2 sample (25 episodes x 10 steps); skips where the shared data is absent."""
    if not (BRIDGE_DEBUG_DIR / "features.json").exists():
        pytest.skip(f"real Bridge sample not found at {BRIDGE_DEBUG_DIR}")
    return BRIDGE_DEBUG_DIR


@pytest.fixture()
def source_file(tmp_path):
    """Write a source mapping as YAML into tmp_path and return its path: ``source_file(mapping, name=None)``."""

    def _write(source: dict, name: str | None = None) -> Path:
        return rlds_factory.write_source(tmp_path, source, name)

    return _write
