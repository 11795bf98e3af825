"""The annotate job's steps over whole episodes, without Beam: depth maps, depth codes, gripper points,
samples, and the deterministic per-episode tar part.

Each stage is a small class: ``setup()`` loads its model once (per worker). The model stages (depth, depth codes,
trace with a costly locator) are :class:`~armdata.pipeline.stages.batching.BatchedStage` s: the job runs frames
of several episodes in one model call (``EpisodeBatcher``, batch sizes in the config's ``batch`` section);
``process(work)`` runs one episode alone. ``EpisodeWork`` carries an episode and what the stages have found so
far; it never leaves a worker (Beam fuses the stages), so no image goes through a shuffle.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from armdata.annotators.actions import normalize as act
from armdata.annotators.draw import draw_trace
from armdata.schemas.errors import ArmdataError, RecordError
from armdata.schemas.records import StandardEpisode
from armdata.schemas.sample import (
    FLAG_ACTION_CLIPPED,
    FLAG_NO_POINT,
    FLAG_NO_TRACE,
    ActionAnnotation,
    GripperPoint,
    SampleAnnotation,
    sample_key,
)
from armdata.schemas.source import BUILTIN_PREFIX, SourceConfig
from armdata.schemas.templates import TEMPLATE_VERSION, TemplateSettings, TextInputs, render_all

from armdata.pipeline.stages.batching import process_one
from armdata.pipeline.stages.config import AnnotateConfig

logger = logging.getLogger(__name__)

DRAWN_MEMBER = "traj.png"  # lossless, so the drawn pixels are exactly MolmoAct's loader's


@dataclass
class EpisodeWork:
    """One episode on its way through the stages (mutable, stays in one worker)."""

    episode: StandardEpisode
    depth_u8: np.ndarray | None = None  # uint8 [T, 320, 320]
    depth_codes: np.ndarray | None = None  # int64 [T, 100]
    points: Any = None  # armdata.pipeline.stages.trace.EpisodePoints
    provenance: dict[str, Any] = field(default_factory=dict)


def stage_error(work: EpisodeWork, field_name: str, e: Exception) -> RecordError:
    """A stage failure as a dead letter naming the episode and the field the stage makes."""
    if isinstance(e, RecordError):
        return e
    ep = work.episode
    return RecordError(ep.source, ep.episode_key, None, field_name, "model_error", f"{type(e).__name__}: {e}")


def _set_threads(n: int) -> None:
    """Threads per worker for torch and OpenCV (its resize, LK and PNG pools): N processes on N cores each
    with their own pools of N threads oversubscribe the machine."""
    import torch

    if n > 0:
        torch.set_num_threads(n)
        cv2.setNumThreads(n)


def depth_backend_for(cfg: AnnotateConfig, source: SourceConfig) -> str:
    """Which depth backend a source uses: its depth camera unless a model is asked for."""
    if cfg.depth.backend != "auto":
        return cfg.depth.backend
    if source.cameras.depth and cfg.depth.model is None:
        return "depth-camera"
    return "depth-anything"


class DepthStage:
    """Primary frames (or the depth camera) -> uint8 [T, 320, 320] depth maps, in model calls that span episodes
    (a :class:`~armdata.pipeline.stages.batching.BatchedStage`)."""

    field_name = "depth"

    def __init__(self, cfg: AnnotateConfig, sources: list[SourceConfig]):
        self.cfg = cfg
        self.backend_of = {s.name: depth_backend_for(cfg, s) for s in sources}
        self.batch_size = cfg.batch.depth.for_device(cfg.depth.device)
        # A model wants one shape per call (bitwise the same output whatever the batch mates); the depth camera's
        # frame-wise numpy does not.
        self.pads = "depth-anything" in self.backend_of.values()
        self._backends: dict[str, Any] = {}

    def _make(self, name: str):
        from armdata.annotators.depth.estimator import make_depth_backend

        if name == "depth-anything":
            kw = {"input_size": self.cfg.depth.input_size, "device": self.cfg.depth.device,
                  "batch_size": self.batch_size, "preprocess": self.cfg.preset}
            if self.cfg.depth.model:
                kw["model"] = self.cfg.depth.model
            return make_depth_backend(name, **kw)
        return make_depth_backend(name, preprocess=self.cfg.preset)

    def setup(self) -> None:
        _set_threads(self.cfg.torch_threads)
        for name in sorted(set(self.backend_of.values())):
            backend = self._make(name)
            backend.setup()
            self._backends[name] = backend

    def provenance(self) -> dict:
        """Model ids, settings and licences, read off unloaded backends (the driver may have no GPU)."""
        return {name: (self._backends.get(name) or self._make(name)).provenance()
                for name in sorted(set(self.backend_of.values()))}

    def inputs(self, work: EpisodeWork) -> tuple[tuple, np.ndarray]:
        ep = work.episode
        name = self.backend_of[ep.source]
        if name == "depth-camera":
            if ep.depth_camera is None:
                raise RecordError(ep.source, ep.episode_key, None, "depth_camera", "missing_field",
                                  "the depth-camera backend needs the source's cameras.depth")
            frames = np.asarray(ep.depth_camera)
        else:
            frames = np.asarray(ep.primary)
        return (name, frames.shape[1:], frames.dtype.str), frames

    def run(self, group: tuple, batch: np.ndarray) -> np.ndarray:
        return self._backends[group[0]].process_batch(batch)

    def attach(self, work: EpisodeWork, results: list) -> EpisodeWork:
        work.depth_u8 = np.stack(results)
        work.provenance["depth_backend"] = self.backend_of[work.episode.source]
        return work

    def error(self, work: EpisodeWork, exc: Exception, first_input: int) -> RecordError:
        from armdata.annotators.depth.estimator import InvalidDepthFrame

        ep = work.episode
        if isinstance(exc, InvalidDepthFrame):
            field_name = "depth_camera" if self.backend_of[ep.source] == "depth-camera" else "primary"
            return RecordError(ep.source, ep.episode_key, first_input + exc.frame_index, field_name, "bad_depth",
                               str(exc))
        return stage_error(work, self.field_name, exc)

    def process(self, work: EpisodeWork) -> EpisodeWork:
        """One episode alone (tests, benchmarks); the job batches across episodes."""
        return process_one(self, work)


def require_depth_tokenizer(cfg: AnnotateConfig, sources: list[SourceConfig]) -> None:
    """Real data needs a real depth tokenizer: without ``--depth-tokenizer`` only the built-in sample may run (on
    the shipped demo tokenizer, whose codes mean nothing to a released MolmoAct model)."""
    if cfg.depth_tokenizer.checkpoint:
        return
    real = [s.name for s in sources if not s.data.dir.startswith(BUILTIN_PREFIX)]
    if real:
        raise ArmdataError(
            f"no depth tokenizer given for source(s) {', '.join(real)}: pass --depth-tokenizer (MolmoAct's "
            "vae-final.pt, or one from `armdata train-depth-tokenizer`); the shipped demo tokenizer is for the "
            "built-in sample only"
        )


def _is_demo_tokenizer(path: str) -> bool:
    """Whether ``path`` is the shipped demo tokenizer (named explicitly or taken by default on the sample)."""
    import os

    from armdata.annotators.depth.tokenizer import default_demo_tokenizer_path

    try:
        return os.path.realpath(path) == os.path.realpath(default_demo_tokenizer_path())
    except ArmdataError:  # the asset is missing: then this is not it
        return False


# How each preset feeds the VQ-VAE a checkpoint that does not record it (AiT .pt files such as vae-final.pt).
TOKENIZER_INPUT_SCALING = {"molmoact": "unit", "armdata": "signed"}


class DepthCodeStage:
    """Depth maps -> 100 VQ-VAE codes per frame, in calls that span episodes."""

    field_name = "depth_codes"
    pads = True

    def __init__(self, cfg: AnnotateConfig):
        self.cfg = cfg
        self.batch_size = cfg.batch.depth_codes.for_device(cfg.depth.device)
        self.tokenizer = None

    def checkpoint(self) -> str:
        if self.cfg.depth_tokenizer.checkpoint:
            return self.cfg.depth_tokenizer.checkpoint
        from armdata.annotators.depth.tokenizer import default_demo_tokenizer_path

        return default_demo_tokenizer_path()

    def setup(self, device: str | None = None) -> None:
        from armdata.annotators.depth.tokenizer import DepthTokenizer

        _set_threads(self.cfg.torch_threads)
        self.tokenizer = DepthTokenizer.from_checkpoint(self.checkpoint(), device=device or self.cfg.depth.device,
                                                        batch_size=self.batch_size,
                                                        input_scaling=TOKENIZER_INPUT_SCALING[self.cfg.preset])

    def provenance(self) -> dict:
        """Checks the checkpoint's layout (on the CPU; it is small) and says what it is."""
        if self.tokenizer is None:
            self.setup(device="cpu")
        prov = dict(self.tokenizer.provenance())
        prov["demo"] = _is_demo_tokenizer(self.checkpoint())
        return prov

    def inputs(self, work: EpisodeWork) -> tuple[tuple, np.ndarray]:
        return ("vqvae",), work.depth_u8

    def run(self, group: tuple, batch: np.ndarray) -> np.ndarray:
        return self.tokenizer.encode(batch)

    def attach(self, work: EpisodeWork, results: list) -> EpisodeWork:
        work.depth_codes = np.stack(results)
        work.depth_u8 = None  # coded; nothing later reads the maps (100 KB a frame: 100 MB per 1,000 steps)
        return work

    def error(self, work: EpisodeWork, exc: Exception, first_input: int) -> RecordError:
        return stage_error(work, self.field_name, exc)

    def process(self, work: EpisodeWork) -> EpisodeWork:
        """One episode alone (tests, benchmarks); the job batches across episodes."""
        return process_one(self, work)


def has_points(cfg: AnnotateConfig, source: SourceConfig) -> bool:
    """Whether points tables reach this source (its ``locator_points`` or ``--points``)."""
    return bool(source.locator_points or cfg.trace.points)


def locator_for(cfg: AnnotateConfig, source: SourceConfig) -> str:
    """``auto``: the calibrated projection of the end-effector state when the source has both; else the camera
    fitted to points tables (``fit``) when tables and the end-effector state are there; else its hint."""
    eef = source.state.eef_position is not None
    if cfg.trace.locator == "fit" and not (eef and has_points(cfg, source)):
        raise ArmdataError(
            f"source {source.name}: the fit locator needs state.eef_position and a points table (locator_points in "
            f"{source.origin or 'its source file'}, or --points FILE; `armdata locate` writes one)"
        )
    if cfg.trace.locator != "auto":
        return cfg.trace.locator
    if source.calibration is not None and eef:
        return "projection"
    if eef and has_points(cfg, source):
        return "fit"
    if source.locator_hint is not None:
        return "hint"
    raise ArmdataError(
        f"source {source.name}: no way to find the end effector: give calibration + state.eef_position, "
        f"locator_points (a points table; `armdata locate --source {source.name} --out points.jsonl` writes one, "
        f"then `--points points.jsonl`) or a locator_hint in {source.origin or 'its source file'}, or use "
        f"--locator pointer with --set trace.pointer_model=..."
    )


class TraceStageRunner:
    """Locate and track the end effector over the episode (per-frame pixel points, method, confidence).

    A costly locator (one with ``locate_frames``: the pointing VLM, a detector) answers on the frames its trace
    mode plans to ask about in calls that span episodes; tracking then runs per episode with those answers. Cheap
    locators (projection, hint) ask nothing up front.
    """

    field_name = "trace"
    pads = True

    def __init__(self, cfg: AnnotateConfig, sources: list[SourceConfig], fit_data: Any = None):
        self.cfg = cfg
        self.sources = {s.name: s for s in sources}
        self.locator_of = {s.name: locator_for(cfg, s) for s in sources}  # fails at construction, not in workers
        self.batch_size = cfg.batch.pointer.for_device(self.trace_config("hint").pointer_device)
        from armdata.pipeline.stages.trace import check_trace_parts

        for locator in sorted(set(self.locator_of.values())):
            try:
                tc = self.trace_config(locator)
            except ValueError as e:
                raise ArmdataError(f"trace settings: {e}") from None
            check_trace_parts(tc)
        self.fit_data = fit_data  # armdata.pipeline.stages.fit.FitData: the cameras the fit locator projects through
        self.annotators: dict[str, Any] = {}

    def trace_config(self, locator: str):
        from armdata.pipeline.stages.trace import TraceConfig

        t = self.cfg.trace
        from armdata.annotators.track import resolve_tracker

        mode = t.mode
        if locator == "fit" and "mode" not in t.model_fields_set:
            mode = "point-every-frame"  # the fitted camera gives every step; a tracker would only add drift
        return TraceConfig(mode=mode, locator=locator, tracker=resolve_tracker(t.tracker, t.tracker_checkpoint),
                           keyframe_every=t.keyframe_every,
                           pointer_model=t.pointer_model, pointer_trust_remote_code=t.pointer_trust_remote_code,
                           pointer_device=t.pointer_device, pointer_arm=t.pointer_arm, tracker_checkpoint=t.tracker_checkpoint,
                           tracker_device=t.tracker_device, disagreement_px=t.disagreement_px)

    def _locator(self, locator: str):
        """The fit locator carries the fitted cameras; the others are built from the config by the trace stage."""
        if locator != "fit":
            return None
        from armdata.annotators.locate.fit import FitLocator

        if self.fit_data is None:
            raise ArmdataError("the fit locator needs the fitted cameras (armdata.beam_jobs.fit_cameras)")
        return FitLocator(**self.fit_data.locator_kwargs())

    def setup(self) -> None:
        from armdata.pipeline.stages.trace import TraceAnnotator

        _set_threads(self.cfg.torch_threads)
        for locator in sorted(set(self.locator_of.values())):
            cfg = dataclasses.replace(self.trace_config(locator), pointer_batch_size=self.batch_size)
            annotator = TraceAnnotator(cfg, locator=self._locator(locator))
            annotator.setup()
            self.annotators[locator] = annotator

    def provenance(self) -> dict:
        """Locator and tracker per source with their settings and licences, from unloaded objects."""
        from armdata.pipeline.stages.trace import build_locator, build_tracker

        out = {}
        for locator in sorted(set(self.locator_of.values())):
            cfg = self.trace_config(locator)
            loc, trk = self._locator(locator) or build_locator(cfg), build_tracker(cfg)
            out[locator] = {
                "config": dataclasses.asdict(cfg),
                "locator": loc.provenance() if hasattr(loc, "provenance") else {"locator": locator},
                "tracker": trk.provenance(),
            }
        prov = {"per_source": self.locator_of, "locators": out}
        if self.fit_data is not None:
            prov["fit"] = self.fit_data.summary([s for s, loc in self.locator_of.items() if loc == "fit"])
        return prov

    def _planned(self, work: EpisodeWork) -> tuple[str, list[int]]:
        locator = self.locator_of[work.episode.source]
        return locator, self.annotators[locator].planned_locator_frames(work.episode.num_steps)

    def inputs(self, work: EpisodeWork) -> tuple[tuple, np.ndarray]:
        locator, idx = self._planned(work)
        if not idx:
            return (locator,), np.empty((0,), np.uint8)
        frames = np.asarray(work.episode.primary)
        frames = frames if idx == list(range(len(frames))) else frames[idx]
        return (locator, frames.shape[1:]), frames

    def run(self, group: tuple, batch: np.ndarray) -> list:
        return self.annotators[group[0]].locator.locate_frames(batch)

    def attach(self, work: EpisodeWork, results: list) -> EpisodeWork:
        locator, idx = self._planned(work)
        src = work.episode.source
        located = dict(zip(idx, results)) if idx else None
        work.points = self.annotators[locator].annotate(work.episode, self.sources[src], located=located)
        return work

    def error(self, work: EpisodeWork, exc: Exception, first_input: int) -> RecordError:
        return stage_error(work, self.field_name, exc)

    def process(self, work: EpisodeWork) -> EpisodeWork:
        """One episode alone (tests, benchmarks); the job batches across episodes."""
        return process_one(self, work)


def encode_jpeg(image_rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ArmdataError("JPEG encoding failed")
    return buf.tobytes()


def encode_png(image_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ArmdataError("PNG encoding failed")
    return buf.tobytes()


def _is_jpeg(b: bytes | None) -> bool:
    return bool(b) and b[:2] == b"\xff\xd8"


def view_member(view: str) -> str:
    return f"{view}.jpg"


class SampleStage:
    """Episode + annotations -> one sample per step: members (bytes by extension) and the annotation.

    Action statistics arrive as a dict (dataset_statistics.json) keyed by source name.
    """

    def __init__(self, cfg: AnnotateConfig, provenance_id: str):
        self.cfg = cfg
        self.provenance_id = provenance_id
        self.tokenizer = None

    def setup(self) -> None:
        from armdata.annotators.actions.tokenizer import ActionTokenizer

        self.tokenizer = ActionTokenizer.from_pretrained(self.cfg.actions.tokenizer)

    def process(self, work: EpisodeWork, statistics: dict) -> list[tuple[str, dict[str, bytes]]]:
        """The episode's samples, (key, members) in step order."""
        return list(self.iter_samples(work, statistics))

    def iter_samples(self, work: EpisodeWork, statistics: dict) -> Iterator[tuple[str, dict[str, bytes]]]:
        """As ``process``, one sample at a time (the job streams them into the episode's tar: a 1,000-step
        episode's samples are ~50 MB)."""
        from armdata.annotators.depth.tokenizer import depth_text
        from armdata.annotators.trace import build_traces, trace_text

        ep = work.episode
        if ep.source not in statistics:
            raise RecordError(ep.source, ep.episode_key, None, "action", "missing_statistics",
                              f"no statistics for source {ep.source!r}; have {sorted(statistics)}")
        stats = act.ActionStats.from_json(statistics[ep.source])
        vocab = self.tokenizer.vocab_size
        h, w = ep.image_size
        pts = work.points
        points_uv = np.asarray(pts.points_uv, dtype=np.float64)
        visible = np.asarray(pts.visible, dtype=bool)
        traces = build_traces(points_uv, visible, h, w)

        norm = act.NORMALIZERS[self.cfg.preset]
        normed = norm(ep.actions, stats)
        bins = act.to_bins(normed)
        ids = act.bins_to_ids(bins, vocab)
        clipped = _clipped(ep.actions, stats)
        settings = TemplateSettings(self.cfg.templates.information_phrase, multi_view=bool(ep.extra_views),
                                    wording=self.cfg.preset)
        n_chunk = self.cfg.chunk_size
        gt_uv = ep.metadata.get("gripper_uv")
        gt_vis = ep.metadata.get("gripper_visible")

        for t in range(ep.num_steps):
            key = sample_key(ep.source, ep.episode_key, t)
            flags = list(pts.flags[t]) if pts.flags is not None else []
            flags.extend(ep.flags)  # episode-level: an instruction or camera the source's checks keep with a flag
            if not visible[t] and FLAG_NO_POINT not in flags:
                flags.append(FLAG_NO_POINT)
            trace = traces[t]
            if trace is None:
                flags.append(FLAG_NO_TRACE)
            if clipped[t]:
                flags.append(FLAG_ACTION_CLIPPED)
            symbols = self.tokenizer.ids_to_symbols([int(i) for i in ids[t]])
            chunk_ids = chunk_text = None
            if n_chunk > 0:
                chunk_ids = act.bins_to_ids(act.to_bins(norm(act.chunk(ep.actions, t, n_chunk), stats)),
                                            vocab).astype(int).tolist()
                chunk_text = act.render_action_chunk_text([self.tokenizer.ids_to_symbols(c) for c in chunk_ids])
            codes = work.depth_codes[t] if work.depth_codes is not None else None
            inputs = TextInputs(
                instruction=ep.instruction,
                depth=depth_text(codes) if codes is not None else None,
                trace=trace_text(trace) if trace is not None else None,
                action=act.render_action_text(symbols),
                action_chunk=chunk_text,
            )
            ground_truth = {}
            if gt_uv is not None:
                seen = gt_vis is None or bool(np.asarray(gt_vis)[t])
                ground_truth["gripper_uv"] = [float(x) for x in np.asarray(gt_uv)[t]] if seen else None
            ann = SampleAnnotation(
                key=key,
                source=ep.source,
                episode=ep.episode_key,
                step=t,
                num_steps=ep.num_steps,
                instruction=ep.instruction,
                image_size=[h, w],
                views=sorted(ep.extra_views),
                depth_codes=[int(c) for c in codes] if codes is not None else None,
                trace_uv255=trace.astype(int).tolist() if trace is not None else None,
                gripper=GripperPoint(
                    uv=[float(points_uv[t, 0]), float(points_uv[t, 1])] if visible[t] else None,
                    method=str(pts.method[t]),
                    confidence=float(pts.confidence[t]),
                ),
                action=ActionAnnotation(
                    raw=[float(x) for x in ep.actions[t]],
                    normalized=[float(x) for x in normed[t]],
                    bins=[int(x) for x in bins[t]],
                    ids=[int(x) for x in ids[t]],
                    symbols=list(symbols),
                    vocab_size=int(vocab),
                    chunk_ids=chunk_ids,
                ),
                flags=sorted(set(flags)),
                text=render_all(inputs, settings, self.cfg.templates.names),
                template_version=TEMPLATE_VERSION,
                provenance_id=self.provenance_id,
                ground_truth=ground_truth,
                source_episode_id=ep.source_id,
            )
            yield key, self._members(ep, t, trace, ann)

    def _members(self, ep: StandardEpisode, t: int, trace, ann: SampleAnnotation) -> dict[str, bytes]:
        q = self.cfg.output.jpeg_quality
        src = ep.primary_jpeg[t] if ep.primary_jpeg else None
        members = {"jpg": src if _is_jpeg(src) else encode_jpeg(ep.primary[t], q), "json": ann.to_json()}
        for view, frames in ep.extra_views.items():
            b = ep.extra_jpeg.get(view, [None] * ep.num_steps)[t]
            members[view_member(view)] = b if _is_jpeg(b) else encode_jpeg(frames[t], q)
        if self.cfg.templates.store_drawn_image:
            drawn = draw_trace(ep.primary[t], trace) if trace is not None else ep.primary[t]
            members[DRAWN_MEMBER] = encode_png(drawn)
        return members


def _clipped(actions: np.ndarray, stats: act.ActionStats) -> np.ndarray:
    """[T] True where a value lay outside [q01, q99] (normalized dims) or [-1, 1] (the others)."""
    a = np.asarray(actions, dtype=np.float64)
    out = np.where(stats.mask, (a < stats.q01) | (a > stats.q99), np.abs(a) > 1.0)
    return out.any(axis=1)
