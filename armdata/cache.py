"""Where armdata caches what it can remake (the built-in sample, statistics, the demo tokenizer)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$ARMDATA_CACHE`` or ``~/.cache/armdata``."""
    env = os.environ.get("ARMDATA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "armdata"
