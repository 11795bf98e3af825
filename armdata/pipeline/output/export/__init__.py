"""Exports of a finished output into layouts other trainers load (MolmoAct's fine-tuning and mixture datasets,
LeRobot v3.0), made from the shards alone: no model runs. ``EXPORTERS.create(name)``; each exporter module
registers itself with ``@register(name)`` from ``export.base`` (not from this package: circular) and is
imported below. A new export layout is a module in this room.

May import ``pipeline.output`` (the shard reader), ``annotators`` and ``schemas``.
"""

from armdata.pipeline.output.export.base import EXPORTERS, Exporter, ExportResult, iter_samples, register
from armdata.pipeline.output.export import lerobot  # noqa: F401,E402  (registers "lerobot")
from armdata.pipeline.output.export import molmoact  # noqa: E402,F401  registers "molmoact"

__all__ = ["EXPORTERS", "ExportResult", "Exporter", "iter_samples", "register"]
