"""The optional extras of pyproject.toml, per model family, and the check that names the missing one.

An extra is installed by ``pip install 'armdata[NAME]'``; the modules listed here are what each one brings. A model
that needs one calls ``require_extra`` in its ``setup()`` (and the driver calls it before a job starts), so a missing
package is one line naming the extra, not an ImportError from deep inside a worker.
"""

from __future__ import annotations

import importlib.util

from armdata.schemas.errors import MissingExtraError

# extra -> (modules it installs, a note for the user). Keep in step with [project.optional-dependencies].
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "cotracker": (("cotracker",), "CoTracker3 installs from its repository (CC-BY-NC 4.0): pip install "
                  "'cotracker @ git+https://github.com/facebookresearch/co-tracker'; checkpoints from "
                  "https://huggingface.co/facebook/cotracker3 go to --tracker-checkpoint"),
    "sam2": (("torchvision",), "transformers' SAM2 video processor needs torchvision built for your torch "
             "(on CPU: the CPU wheel from download.pytorch.org)"),
    "molmo": (("torchvision", "einops"), "Molmo's processors need torchvision built for your torch"),
    "detector": (("scipy",), "transformers' OWLv2 image processor resizes with scipy"),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; known: {', '.join(sorted(EXTRAS))}")
    return [m for m in EXTRAS[extra][0] if importlib.util.find_spec(m) is None]


def require_extra(extra: str, what: str) -> None:
    """Raise MissingExtraError naming ``extra`` when any of its modules is missing."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(extra, what, missing, EXTRAS[extra][1])
