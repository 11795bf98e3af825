"""Model calls that span episodes (armdata/pipeline/stages/batching.py) on the real stages: Depth Anything V2 and
the VQ-VAE at tiny size loaded through the users' path, the depth camera, and the pointer on a tiny Molmo2 of the
real architecture. Results go back to their episodes in order and never depend on the batch mates."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from armdata.annotators.depth.random_init import save_random_depth_anything
from armdata.annotators.locate.pointer import PointerConfig, PointerLocator
from armdata.pipeline.stages.annotate import DepthCodeStage, DepthStage, EpisodeWork, TraceStageRunner
from armdata.pipeline.stages.batching import EpisodeBatcher, process_one
from armdata.pipeline.stages.config import load_config
from armdata.pipeline.stages.trace import TraceAnnotator, keyframes
from armdata.schemas.errors import RecordError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trace_factory import make_episode, make_source, save_tiny_molmo2, standin_molmo2_processor_factory  # noqa: E402

LENGTHS = (5, 11, 3, 9)  # 28 frames: calls of 8 take frames from two or three episodes


def _episodes(lengths=LENGTHS, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return [make_episode(rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8), key=f"ep{i}")
            for i, t in enumerate(lengths)]


def _run(stage, works):
    batcher = EpisodeBatcher(stage)
    out, pending = [], []
    for w in works:
        out.extend(batcher.add(w))
        pending.append(batcher.pending_episodes)
    out.extend(batcher.flush())
    return batcher, out, pending


@pytest.fixture(scope="module")
def tiny_depth(tmp_path_factory) -> str:
    return save_random_depth_anything(tmp_path_factory.mktemp("da"), "tiny", seed=1)


def _depth_stage(model_dir: str, batch: int) -> DepthStage:
    cfg = load_config(None, [f"batch.depth.cpu={batch}", "depth.input_size=252"], **{"depth.model": model_dir})
    stage = DepthStage(cfg, [make_source()])
    stage.setup()
    return stage


def test_depth_calls_span_episodes_and_give_each_episode_its_own_maps_in_order(tiny_depth):
    stage = _depth_stage(tiny_depth, 8)
    alone = {ep.episode_key: process_one(stage, EpisodeWork(ep)).depth_u8 for ep in _episodes()}
    batcher, out, pending = _run(stage, [EpisodeWork(ep) for ep in _episodes()])
    assert batcher.calls == math.ceil(sum(LENGTHS) / 8) == 4  # alone: 1 + 2 + 1 + 2 = 6 calls
    assert batcher.padded == 4 * 8 - sum(LENGTHS)
    assert sorted(o.work.episode.episode_key for o in out) == ["ep0", "ep1", "ep2", "ep3"]
    assert all(o.error is None for o in out)
    for o in out:  # bitwise: every call has the same shape, so batch mates cannot change a frame's map
        assert o.work.depth_u8.shape == (o.work.episode.num_steps, 320, 320)
        np.testing.assert_array_equal(o.work.depth_u8, alone[o.work.episode.episode_key])
    assert max(pending) <= 2  # the episode being filled and the one before it, never the whole bundle


def test_depth_maps_barely_depend_on_the_batch_size(tiny_depth):
    # Another batch *size* is another call shape, for which the CPU kernels sum in another order (~1e-13 on the
    # inverse depth): a grey level can then round the other way where a value lies that close to it. Measured here:
    # a few dozen pixels in a million, by one level (the job's shards come out identical: test_annotate).
    maps = {}
    for b in (1, 8, 64):
        _, out, _ = _run(_depth_stage(tiny_depth, b), [EpisodeWork(ep) for ep in _episodes()])
        maps[b] = {o.work.episode.episode_key: o.work.depth_u8.astype(int) for o in out}
    for k in maps[1]:
        for b in (8, 64):
            diff = np.abs(maps[1][k] - maps[b][k])
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_frames_of_another_size_run_in_their_own_calls(tiny_depth):
    stage = _depth_stage(tiny_depth, 8)
    works = [EpisodeWork(ep) for ep in _episodes((6, 6))] + [EpisodeWork(ep) for ep in _episodes((4,), h=40, w=72)]
    batcher, out, _ = _run(stage, works)
    assert batcher.calls == 3  # 12 frames of 48x64 in two calls, 4 of 40x72 in one
    assert [o.work.depth_u8.shape[0] for o in out] == [6, 6, 4]


def test_depth_codes_span_episodes_and_match_one_episode_at_a_time():
    cfg = load_config(None, ["batch.depth_codes.cpu=16"])
    stage = DepthCodeStage(cfg)
    stage.setup()
    rng = np.random.default_rng(2)
    works = []
    for ep in _episodes():
        w = EpisodeWork(ep)
        w.depth_u8 = rng.integers(0, 256, (ep.num_steps, 320, 320), dtype=np.uint8)
        works.append(w)
    alone = [stage.tokenizer.encode(w.depth_u8) for w in works]
    batcher, out, _ = _run(stage, works)
    assert batcher.calls == 2
    got = {o.work.episode.episode_key: o.work.depth_codes for o in out}
    for w, codes in zip(works, alone):
        np.testing.assert_array_equal(got[w.episode.episode_key], codes)


def test_a_bad_depth_frame_fails_its_episode_alone_and_names_its_step():
    cfg = load_config(None, ["depth.backend=depth-camera", "batch.depth.cpu=8"])
    stage = DepthStage(cfg, [make_source()])
    stage.setup()
    rng = np.random.default_rng(3)
    works = []
    for ep in _episodes():
        depth = rng.uniform(0.3, 2.0, ep.primary.shape[:3]).astype(np.float32)
        if ep.episode_key == "ep1":
            depth[7] = 0.0  # no valid reading at step 7: its call holds frames of ep0 and ep2 too
        works.append(EpisodeWork(dataclasses.replace(ep, depth_camera=depth)))
    _, out, _ = _run(stage, works)
    errors = {o.work.episode.episode_key: o.error for o in out if o.error is not None}
    assert list(errors) == ["ep1"]
    e = errors["ep1"]
    assert isinstance(e, RecordError) and (e.episode, e.step, e.field, e.kind) == ("ep1", 7, "depth_camera", "bad_depth")
    good = {o.work.episode.episode_key: o.work.depth_u8 for o in out if o.error is None}
    for w in works:
        if w.episode.episode_key != "ep1":
            np.testing.assert_array_equal(good[w.episode.episode_key], stage._backends["depth-camera"]
                                          .process_batch(w.episode.depth_camera))


@pytest.fixture(scope="module")
def tiny_molmo2(tmp_path_factory) -> str:
    return str(save_tiny_molmo2(tmp_path_factory.mktemp("molmo2")))


def _pointer_runner(model_dir: str, batch: int) -> TraceStageRunner:
    cfg = load_config(None, ["trace.mode=point-keyframes", "trace.keyframe_every=4", "trace.locator=pointer",
                             f"trace.pointer_model={model_dir}", f"batch.pointer.cpu={batch}"])
    runner = TraceStageRunner(cfg, [make_source()])
    # The real Molmo2 classes; only its image processor is a stand-in (the real one needs torchvision).
    tcfg = dataclasses.replace(runner.trace_config("pointer"), pointer_batch_size=batch)
    locator = PointerLocator(PointerConfig(model=model_dir, batch_size=batch, max_new_tokens=4),
                             processor_factory=standin_molmo2_processor_factory)
    runner.annotators["pointer"] = TraceAnnotator(tcfg, locator=locator)
    runner.annotators["pointer"].setup()
    return runner


def test_pointer_calls_span_episodes_and_each_episode_gets_its_own_answers(tiny_molmo2):
    eps = _episodes((9, 13, 6), h=32, w=40, seed=4)
    planned = sum(len(keyframes(ep.num_steps, 4)) for ep in eps)
    results = {}
    for b in (1, 4):
        runner = _pointer_runner(tiny_molmo2, b)
        batcher, out, _ = _run(runner, [EpisodeWork(ep) for ep in eps])
        assert batcher.calls == math.ceil(planned / b)
        results[b] = {o.work.episode.episode_key: o.work.points for o in out}
    # One episode alone, asking the locator itself (no batching): the same points, flags and call counts.
    runner = _pointer_runner(tiny_molmo2, 4)
    for ep in eps:
        direct = runner.annotators["pointer"].annotate(ep, make_source())
        for b in (1, 4):
            got = results[b][ep.episode_key]
            np.testing.assert_array_equal(got.points_uv, direct.points_uv)
            assert got.flags == direct.flags and got.method == direct.method
            assert got.pointer_calls == direct.pointer_calls == len(keyframes(ep.num_steps, 4))


def test_the_pointer_answers_a_frame_the_same_whatever_shares_its_call(tiny_molmo2):
    runner = _pointer_runner(tiny_molmo2, 4)
    loc = runner.annotators["pointer"].locator
    frames = _episodes((4, 4), h=32, w=40, seed=5)
    a, b = frames[0].primary, frames[1].primary
    mixed = loc.answer_texts(np.concatenate([a[:2], b[:2]]))
    assert loc.answer_texts(a)[:2] == mixed[:2]
    assert loc.answer_texts(np.concatenate([b[2:], a[:2]]))[2:] == mixed[:2]
