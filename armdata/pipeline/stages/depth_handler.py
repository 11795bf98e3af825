"""Depth maps inside Beam: a ``ModelHandler`` for ``RunInference`` over single frames.

Beam's own Hugging Face handlers do not import with transformers 5, so this small handler wraps a depth backend
(:mod:`armdata.annotators.depth.estimator`): the backend is built and set up once per worker (``load_model``), frames are
batched by Beam's ``BatchElements`` with a bounded maximum batch size, and every batch is counted in Beam metrics.

    frames | RunInference(DepthModelHandler("depth-anything", {"model": "small"}, max_batch_size=8))
    keyed  | RunInference(keyed_depth_handler("depth-camera"))        # (key, frame) -> (key, map)

An element is one frame: uint8 [H, W, 3] for ``depth-anything``, depth [H, W] for ``depth-camera``; the output is
the uint8 [320, 320] map. Frames of different sizes may share a batch; they are run in groups of equal size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler

from armdata.annotators.depth.estimator import DepthBackend, make_depth_backend

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "armdata"


class DepthModelHandler(ModelHandler[np.ndarray, np.ndarray, DepthBackend]):
    """RunInference handler for a depth backend named in the registry.

    backend:         ``depth-anything`` | ``depth-camera`` (any registered name)
    backend_kwargs:  passed to the backend (model, input_size, device, dtype, ...)
    max_batch_size:  upper bound on frames per batch (bounds memory; 8 suits a 24 GB GPU at 518 with ViT-B)
    torch_threads:   ``torch.set_num_threads`` in each worker (1 when several worker processes share few cores)
    """

    def __init__(self, backend: str, backend_kwargs: Mapping[str, Any] | None = None, *, min_batch_size: int = 1,
                 max_batch_size: int = 8, torch_threads: int | None = None):
        if not 1 <= min_batch_size <= max_batch_size:
            raise ValueError(f"need 1 <= min_batch_size <= max_batch_size, got {min_batch_size}, {max_batch_size}")
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size)
        self.backend = backend
        self.backend_kwargs = dict(backend_kwargs or {})
        self.min_batch_size = min_batch_size
        self.max_batch_size = max_batch_size
        self.torch_threads = torch_threads
        self._frames = Metrics.counter(METRICS_NAMESPACE, f"depth/{backend}/frames")
        self._batches = Metrics.counter(METRICS_NAMESPACE, f"depth/{backend}/batches")
        self._batch_size = Metrics.distribution(METRICS_NAMESPACE, f"depth/{backend}/batch_size")
        self._batch_ms = Metrics.distribution(METRICS_NAMESPACE, f"depth/{backend}/batch_ms")

    def load_model(self) -> DepthBackend:
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)
        backend = make_depth_backend(self.backend, **self.backend_kwargs)
        backend.setup()
        logger.info("depth handler loaded %s", backend.provenance())
        return backend

    def run_inference(self, batch: Sequence[np.ndarray], model: DepthBackend,
                      inference_args: dict[str, Any] | None = None) -> Iterable[np.ndarray]:
        t0 = time.perf_counter()
        out: list[np.ndarray | None] = [None] * len(batch)
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(batch):
            groups.setdefault((np.asarray(x).shape, np.asarray(x).dtype.str), []).append(i)
        for idx in groups.values():
            maps = model.process_batch(np.stack([np.asarray(batch[i]) for i in idx]))
            for i, m in zip(idx, maps):
                out[i] = m
        self._frames.inc(len(batch))
        self._batches.inc()
        self._batch_size.update(len(batch))
        self._batch_ms.update(int((time.perf_counter() - t0) * 1000))
        return out

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return int(sum(np.asarray(x).nbytes for x in batch))  # the default pickles every frame to measure it

    def get_metrics_namespace(self) -> str:
        return f"{METRICS_NAMESPACE}/RunInference/depth"

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return {"min_batch_size": self.min_batch_size, "max_batch_size": self.max_batch_size}


def keyed_depth_handler(backend: str, backend_kwargs: Mapping[str, Any] | None = None,
                        **kw) -> KeyedModelHandler:
    """(key, frame) -> (key, uint8 [320, 320] map), keys carried through (sample keys, say)."""
    return KeyedModelHandler(DepthModelHandler(backend, backend_kwargs, **kw))
