"""Model calls that span episodes: frames of several episodes share one call; results go back to their episodes.

A model stage (depth, depth codes, the pointer or a detector) says, per episode, which inputs it wants to run
(``inputs``), how to run one batch of them (``run``) and how to store an episode's results once all are in
(``attach``). :class:`EpisodeBatcher` queues the inputs of the episodes it is given, runs a model call as soon as
``batch_size`` inputs of one group (same backend, same input shape) are waiting, and hands an episode back when its
last input has been run. ``flush()`` runs what is left (the Beam job calls it in ``finish_bundle``).

Why an episode's results never depend on its batch mates: every call to a stage with ``pads = True`` has the
same shape, ``batch_size`` inputs (a short batch is filled by repeating its last input, and those outputs are
dropped). A fixed shape makes the numeric kernels the same for every call, and each row of a batch is computed
alone (no batch statistics at inference), so a frame's output is bitwise the same whichever frames share its call
(checked on Depth Anything and the VQ-VAE: 0.0 difference; a different *shape* differs by ~1e-13). A frame-wise
numpy stage (the depth camera) needs no padding.

Failures: when a batch call raises, each episode in it is run again alone (its own inputs, padded) so that only
the episode at fault becomes a dead letter; the stage's ``error`` names its step where it knows it.

Memory: an episode is held until its last input has run; with inputs taken first come first served, a worker holds
at most the episode being filled plus fewer than ``batch_size`` inputs of the one before, per group.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from armdata.schemas.errors import RecordError

logger = logging.getLogger(__name__)


class BatchedStage(Protocol):
    """A model stage whose calls can span episodes. ``work`` is an ``EpisodeWork``.

    field_name:  the field it makes (dead letters name it)
    batch_size:  inputs per model call
    pads:        True: every call gets exactly ``batch_size`` inputs (see the module docstring)
    """

    field_name: str
    batch_size: int
    pads: bool

    def inputs(self, work: Any) -> tuple[Hashable, np.ndarray]:
        """(group, inputs [n, ...]) for this episode; n may be 0 (nothing to run: attach at once).
        Inputs of one group must be stackable (one shape and dtype)."""

    def run(self, group: Hashable, batch: np.ndarray) -> Sequence[Any]:
        """One model call: inputs [m, ...] of one group -> m results, in order."""

    def attach(self, work: Any, results: list[Any]) -> Any:
        """Store the episode's results (one per input, in order) on ``work``; returns ``work``."""

    def error(self, work: Any, exc: Exception, first_input: int) -> RecordError:
        """The dead letter for an episode whose inputs from ``first_input`` on made ``run`` raise."""


@dataclass
class Outcome:
    """An episode handed back: ``work`` done, or ``error`` (a dead letter) instead."""

    work: Any
    error: RecordError | None = None


@dataclass(eq=False)
class _Pending:
    work: Any
    group: Hashable
    inputs: np.ndarray
    taken: int = 0  # inputs put into a batch so far
    results: list = field(default_factory=list)
    error: RecordError | None = None

    @property
    def complete(self) -> bool:
        return self.error is not None or len(self.results) == len(self.inputs)


class EpisodeBatcher:
    """Runs ``stage`` over episodes in calls of ``stage.batch_size`` inputs drawn from several episodes.

    ``add(work)`` and ``flush()`` yield :class:`Outcome` s of the episodes whose inputs have all run, each once;
    an episode's results reach ``attach`` in input order.
    """

    def __init__(self, stage: BatchedStage):
        if stage.batch_size < 1:
            raise ValueError(f"{stage.field_name}: batch size must be >= 1, got {stage.batch_size}")
        self.stage = stage
        self._queues: dict[Hashable, deque[_Pending]] = {}
        self._waiting: dict[Hashable, int] = {}  # inputs not yet in a batch, per group
        self.calls = 0
        self.inputs_run = 0
        self.padded = 0

    @property
    def pending_episodes(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def add(self, work: Any) -> Iterator[Outcome]:
        try:
            group, inputs = self.stage.inputs(work)
        except Exception as e:  # bad episode data: a dead letter, not the end of the batch
            yield Outcome(work, self.stage.error(work, e, 0))
            return
        p = _Pending(work, group, inputs)
        if len(inputs) == 0:
            yield self._finish(p)
            return
        self._queues.setdefault(group, deque()).append(p)
        self._waiting[group] = self._waiting.get(group, 0) + len(inputs)
        while self._waiting[group] >= self.stage.batch_size:
            yield from self._run_one(group)

    def flush(self) -> Iterator[Outcome]:
        for group in list(self._queues):
            while self._waiting.get(group, 0) > 0:
                yield from self._run_one(group)
        self._queues.clear()
        self._waiting.clear()

    # -- internals ---------------------------------------------------------------------------------------------
    def _run_one(self, group: Hashable) -> Iterator[Outcome]:
        """One call over the next ``batch_size`` waiting inputs of ``group``; then hand back completed episodes."""
        queue, b = self._queues[group], self.stage.batch_size
        slices: list[tuple[_Pending, int, int]] = []
        need = b
        for p in queue:
            if need == 0:
                break
            if p.error is not None or p.taken == len(p.inputs):
                continue
            k = min(need, len(p.inputs) - p.taken)
            slices.append((p, p.taken, p.taken + k))
            p.taken += k
            need -= k
        self._waiting[group] -= b - need
        batch = np.concatenate([p.inputs[a:z] for p, a, z in slices]) if len(slices) > 1 else \
            slices[0][0].inputs[slices[0][1]:slices[0][2]]
        try:
            out = self._call(group, batch)
        except Exception as e:
            logger.info("%s: a batch of %d episodes failed (%s); running each alone", self.stage.field_name,
                        len(slices), e)
            self._run_alone(group, slices)
        else:
            i = 0
            for p, a, z in slices:
                p.results.extend(out[i : i + z - a])
                i += z - a
        yield from self._pop_complete(group)

    def _run_alone(self, group: Hashable, slices: list[tuple[_Pending, int, int]]) -> None:
        for p, a, z in slices:
            try:
                p.results.extend(self._call(group, p.inputs[a:z]))
            except Exception as e:
                p.error = self._error(p, e, a)

    def _call(self, group: Hashable, batch: np.ndarray) -> list:
        m, b = len(batch), self.stage.batch_size
        if self.stage.pads and m < b:
            batch = np.concatenate([batch, np.repeat(batch[-1:], b - m, axis=0)])
            self.padded += b - m
        out = self.stage.run(group, batch)
        if len(out) != len(batch):
            raise RuntimeError(f"{self.stage.field_name}: {len(batch)} inputs gave {len(out)} results")
        self.calls += 1
        self.inputs_run += m
        return list(out[:m])

    def _error(self, p: _Pending, e: Exception, first_input: int) -> RecordError:
        try:
            return self.stage.error(p.work, e, first_input)
        except Exception as inner:  # a broken error hook must not lose the episode silently
            ep = p.work.episode
            return RecordError(ep.source, ep.episode_key, None, self.stage.field_name, "model_error",
                               f"{type(e).__name__}: {e} (and its error hook: {inner})")

    def _pop_complete(self, group: Hashable) -> Iterator[Outcome]:
        queue = self._queues[group]
        keep: deque[_Pending] = deque()
        for p in queue:
            if p.complete:
                if p.error is not None:  # its inputs not yet batched will never run
                    self._waiting[group] -= len(p.inputs) - p.taken
                    p.taken = len(p.inputs)
                yield self._finish(p)
            else:
                keep.append(p)
        self._queues[group] = keep

    def _finish(self, p: _Pending) -> Outcome:
        if p.error is not None:
            return Outcome(p.work, p.error)
        try:
            return Outcome(self.stage.attach(p.work, p.results))
        except Exception as e:
            return Outcome(p.work, self._error(p, e, 0))


def process_one(stage: BatchedStage, work: Any) -> Any:
    """Run ``stage`` on one episode alone (tests, benchmarks, local tools); its dead letter raises."""
    batcher = EpisodeBatcher(stage)
    outcomes = [*batcher.add(work), *batcher.flush()]
    (outcome,) = outcomes
    if outcome.error is not None:
        raise outcome.error
    return outcome.work
