"""The ``template`` tracker (inside the default ``hybrid``, where LK loses the gripper): the whole gripper as a
template, found frame to frame by normalised cross-correlation at three scales, aligned to the seed's appearance
by an affine warp, checked forward-backward, re-detected after a loss.

Why each part (measured on a differently drawn robot with motion blur, JPEG and a 1.7x scale change, where LK
lost an exactly seeded gripper within 1 to 34 frames; see tests/annotators/test_track.py, benchmarks/bench_trace.py):
- A gripper-sized template, not a small window: real grippers are flat-coloured, and only their outline against
  the background carries enough structure to lock onto. Colour NCC on blurred frames (``blur_sigma``) tolerates
  motion blur and JPEG blocks.
- With a fixed camera, the per-pixel median over the clip is the scene without the arm: pixels near it are zeroed
  so the template matches the moving robot, not the clutter it passes over (only where the seed itself moves
  against the median; a moving camera or a short clip leaves the frames as they are).
- Three scales per step (``scale_step``): the gripper grows or shrinks as it comes toward or goes away from the
  camera. A constant-velocity prediction centres the search, and a motion prior (``prior_frac``) breaks ties
  between equally good places, such as two points along a uniform arm link.
- The running template (last frame's appearance) follows rotation and fingers opening; aligning the seed's patch
  to the frame by an affine ECC warp (Evangelidis & Psarakis 2008) started at the running match removes the drift
  a running template accumulates (Matthews et al., "The template update problem", 2004) and carries rotation and
  scale, which a translation-only template cannot.
- Forward-backward check: the new frame's patch is matched back into the last good frame; a round trip that does
  not come home (``fb_frac`` of the gripper size), or a weak correlation, fails the step.
- After ``lost_after`` failed steps in a row the point is lost; from then on every frame is searched whole for the
  seed template, and the track resumes only on a strong match (``redetect_score``). A frame that failed is
  reported not visible, never guessed.

``track`` also sets ``last_fb_px`` [T, N]: each frame's forward-backward round-trip error in pixels (NaN where
not measured).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from armdata.annotators.track.base import TRACKERS, TrackResult, check_inputs

NAME = "template"


@dataclass(frozen=True)
class TemplateConfig:
    """Settings of the template tracker, each with its reason."""

    default_size_frac: float = 0.08  # gripper size when no locator knows it, as a fraction of the image width
    template_frac: float = 1.0  # template side / gripper size: the whole gripper, little background
    min_side: int = 11  # a smaller template has too little structure to correlate reliably
    max_side: int = 95  # cost grows with the square of the side; a larger gripper is matched downscaled
    search_frac: float = 0.6  # search radius around the prediction, in gripper sizes (plus the last motion)
    prior_frac: float = 0.3  # motion prior: a match this many gripper sizes from the prediction loses 0.1 of score
    scale_step: float = 1.05  # scales tried per step: 1/s, 1, s (a gripper approaching the camera grows ~1-2%/step)
    scale_margin: float = 0.005  # another scale is taken only when it correlates better by this much (no jitter)
    blur_sigma: float = 2.0  # Gaussian blur of every frame before matching (motion blur, JPEG blocks)
    min_score: float = 0.5  # normalised correlation below this fails the step
    ecc_min: float = 0.7  # the seed patch's affine alignment is taken when it correlates at least this well
    ecc_iterations: int = 30  # ECC iterations per frame (it starts within a pixel or two of the answer)
    anchor_radius_frac: float = 0.15  # ... and lands within this many gripper sizes of the running match
    fb_frac: float = 0.2  # forward-backward round trip above this many gripper sizes (at least 1.5 px) fails
    velocity_decay: float = 0.8  # the prediction keeps this share of the last motion (a gripper slows and turns)
    lost_after: int = 3  # failed steps in a row before the point is lost and re-detection starts
    redetect_score: float = 0.75  # a re-detection must match the seed template at least this well
    background_min_frames: int = 8  # fewer frames give no reliable per-pixel median background
    background_tol: float = 12.0  # |frame - median| below this (0..255) is background; soft up to twice this
    seed_foreground: float = 0.5  # background suppression only where this share of the seed's centre moves
    static_max_moving: float = 0.5  # a median frame with more than this share of changed pixels: moving camera


def _odd(x: float, lo: int, hi: int) -> int:
    w = int(round(x))
    w = max(lo, min(hi, w))
    return w if w % 2 else w + 1


def _patch(img: np.ndarray, centre: np.ndarray, side: int) -> np.ndarray:
    """A side x side patch (odd side) centred on a sub-pixel point; borders replicate (OpenCV's getRectSubPix)."""
    return cv2.getRectSubPix(img, (side, side), (float(centre[0]), float(centre[1])))


def _peak(score: np.ndarray) -> tuple[float, float, float]:
    """(x, y, value) of the best score with a parabolic sub-pixel refinement in each axis."""
    _, best, _, (x, y) = cv2.minMaxLoc(score)
    dx = dy = 0.0
    h, w = score.shape
    if 0 < x < w - 1:
        a, b, c = score[y, x - 1], score[y, x], score[y, x + 1]
        den = a - 2 * b + c
        dx = 0.5 * (a - c) / den if den < -1e-9 else 0.0
    if 0 < y < h - 1:
        a, b, c = score[y - 1, x], score[y, x], score[y + 1, x]
        den = a - 2 * b + c
        dy = 0.5 * (a - c) / den if den < -1e-9 else 0.0
    return x + float(np.clip(dx, -0.5, 0.5)), y + float(np.clip(dy, -0.5, 0.5)), float(best)


def _match(img: np.ndarray, tmpl: np.ndarray, centre: np.ndarray, radius: float,
           prior_px: float = 0.0) -> tuple[np.ndarray, float]:
    """Where ``tmpl``'s centre best matches in ``img`` within ``radius`` px of ``centre``: (uv, NCC score).

    prior_px > 0: the score is lowered by 0.1 * (distance / prior_px)^2 away from ``centre`` (a motion prior: of
    two equally good matches, such as two places along a uniform arm link, the predicted one wins)."""
    side = tmpl.shape[0]
    r = max(1, int(math.ceil(radius)))
    region = _patch(img, centre, side + 2 * r)
    if float(tmpl.std()) < 1e-3:
        return centre.copy(), -1.0
    score = cv2.matchTemplate(region, tmpl, cv2.TM_CCOEFF_NORMED)
    if prior_px > 0:
        yy, xx = np.mgrid[0 : score.shape[0], 0 : score.shape[1]].astype(np.float32)
        score = score - 0.1 * ((xx - r) ** 2 + (yy - r) ** 2) / (prior_px * prior_px)
    x, y, s = _peak(score)
    return np.array([centre[0] - r + x, centre[1] - r + y], np.float32), s


class TemplateTracker:
    """Multi-scale template tracking with seed-template correction, forward-backward checks and re-detection."""

    name = NAME

    def __init__(self, cfg: TemplateConfig | None = None, **kwargs: Any) -> None:
        self.cfg = cfg if cfg is not None else TemplateConfig(**kwargs)
        self.last_fb_px: np.ndarray | None = None

    def setup(self) -> None:
        """Nothing to load (OpenCV only)."""

    def provenance(self) -> dict[str, Any]:
        return {"tracker": NAME, "opencv": cv2.__version__, **asdict(self.cfg)}

    def gripper_size(self, size_px: float | None, width: int) -> float:
        """size_px where the locator knows it, else ``default_size_frac`` of the image width."""
        ok = size_px is not None and math.isfinite(size_px) and size_px > 0
        return float(size_px) if ok else self.cfg.default_size_frac * width

    def track(self, frames: np.ndarray, queries: np.ndarray, size_px: float | None = None) -> TrackResult:
        frames, q = check_inputs(frames, queries)
        t, _, w = frames.shape[:3]
        n = q.shape[0]
        tracks = np.zeros((t, n, 2), np.float32)
        visible = np.zeros((t, n), bool)
        fb = np.full((t, n), np.nan, np.float32)
        if n and t:
            size = self.gripper_size(size_px, w)
            # A gripper larger than max_side is tracked on frames scaled down to fit (cost grows with side^2).
            f = min(1.0, self.cfg.max_side / (size * self.cfg.template_frac))
            plain = [self._prepare(x, f) for x in frames]
            masks = self._foreground(plain)
            fg = [np.ascontiguousarray(x * m) for x, m in zip(plain, masks)] if masks is not None else plain
            views = {}
            for j in range(n):
                t0, p0 = int(q[j, 0]), (q[j, 1:] * f).astype(np.float32)
                # Suppress the background only where the median saw the gripper as moving at its seed (a short
                # clip in which it barely moves puts the gripper itself into the median).
                use_fg = masks is not None and self._seed_is_foreground(masks[t0], p0, size * f)
                if use_fg not in views:
                    chosen = fg if use_fg else plain
                    views[use_fg] = (chosen, [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in chosen])
                imgs, grays = views[use_fg]
                for step in (1, -1):
                    for i, p, ok, e in self._follow(imgs, grays, t0, step, p0, size * f):
                        tracks[i, j], visible[i, j], fb[i, j] = p / f, ok, e / f
        self.last_fb_px = fb
        return TrackResult(tracks, visible)

    def _prepare(self, frame: np.ndarray, factor: float) -> np.ndarray:
        img = frame.astype(np.float32)
        if factor < 1.0:
            h, w = img.shape[:2]
            img = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        s = self.cfg.blur_sigma
        return cv2.GaussianBlur(img, (0, 0), s) if s > 0 else img

    def _foreground(self, imgs: list[np.ndarray]) -> list[np.ndarray] | None:
        """Per frame, a soft mask [H, W, 1] of what differs from the per-pixel median: with a fixed camera the
        median is the scene without the arm, and a template on masked frames matches the moving robot, not the
        clutter it passes over. None for a moving camera or too few frames for a median."""
        c = self.cfg
        if len(imgs) < c.background_min_frames:
            return None
        stack = np.stack(imgs)
        bg = np.median(stack, axis=0)
        diff = np.abs(stack - bg).max(axis=-1)  # [T, H, W]
        if float(np.median((diff > c.background_tol).mean(axis=(1, 2)))) > c.static_max_moving:
            return None
        return list(np.clip((diff - c.background_tol) / c.background_tol, 0.0, 1.0)[..., None])

    def _seed_is_foreground(self, mask: np.ndarray, p: np.ndarray, size: float) -> bool:
        """Whether enough of the gripper around the seed differs from the median background."""
        side = _odd(0.5 * size, 3, 10**6)
        return float(_patch(np.ascontiguousarray(mask[..., 0]), p, side).mean()) >= self.cfg.seed_foreground

    # -- one point, one direction ------------------------------------------------------------------------------
    def _side(self, size: float) -> int:
        c = self.cfg
        return _odd(size * c.template_frac, c.min_side, 10**6)

    def _resized(self, tmpl: np.ndarray, side: int) -> np.ndarray:
        if tmpl.shape[0] == side:
            return tmpl
        interp = cv2.INTER_AREA if side < tmpl.shape[0] else cv2.INTER_LINEAR
        return cv2.resize(tmpl, (side, side), interpolation=interp)

    def _step(self, a: np.ndarray, pa: np.ndarray, size_a: float, b: np.ndarray, b_gray: np.ndarray,
              pred: np.ndarray, size: float, running: np.ndarray, seed: tuple, radius: float):
        """Into frame b from the last good frame a (point pa, gripper size_a), searching around pred: (new point,
        new size, new pose, score, forward-backward error). ``seed`` = (seed patch grey, pose, seed size)."""
        c = self.cfg
        best = (pred, size, -2.0)
        for k in (1.0, 1 / c.scale_step, c.scale_step):  # a new scale must beat the current one by scale_margin
            side = self._side(size * k)
            uv, sc = _match(b, self._resized(running, side), pred, radius, c.prior_frac * size)
            if sc > best[2] + (c.scale_margin if k != 1.0 else 0.0):
                best = (uv, size * k, sc)
        uv, new_size, score = best
        anchor_gray, pose, size0 = seed
        refined = self._refine(b_gray, anchor_gray, pose, uv, size0, new_size)
        if refined is not None:
            pose, rho = refined
            side = anchor_gray.shape[0]
            uv = (pose @ np.array([(side - 1) / 2, (side - 1) / 2, 1.0])).astype(np.float32)
            new_size = size0 * math.sqrt(abs(float(np.linalg.det(pose[:, :2]))))
            score = max(score, rho)
        else:  # keep the pose's rotation, follow the running match's position and scale
            pose = pose.copy()
            pose[:, :2] *= new_size / size
            side = anchor_gray.shape[0]
            pose[:, 2] += uv - pose @ np.array([(side - 1) / 2, (side - 1) / 2, 1.0])
        # Forward-backward: this frame's patch matched back into the previous good frame should land on pa.
        side = self._side(new_size)
        back, _ = _match(a, self._resized(_patch(b, uv, side), self._side(size_a)), pa, max(2.0, 0.3 * size_a))
        return uv, new_size, pose, score, float(np.linalg.norm(back - pa))

    def _refine(self, gray: np.ndarray, anchor_gray: np.ndarray, pose: np.ndarray, uv: np.ndarray, size0: float,
                size: float) -> tuple[np.ndarray, float] | None:
        """The seed's patch aligned to ``gray`` by an affine warp (ECC, Evangelidis & Psarakis 2008), started from
        ``pose`` moved so the seed's centre lands on ``uv``: the new pose and its correlation, or None where the
        alignment fails or wanders off. The affine warp carries the gripper's rotation and scale, which a
        translation-only template cannot, and the seed's patch never accumulates drift."""
        c = self.cfg
        side = anchor_gray.shape[0]
        ctr = np.array([(side - 1) / 2, (side - 1) / 2, 1.0])
        m0 = pose.astype(np.float32).copy()
        m0[:, 2] += uv - m0 @ ctr
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, c.ecc_iterations, 1e-4)
        try:
            rho, m = cv2.findTransformECC(anchor_gray, gray, m0, cv2.MOTION_AFFINE, crit, None, 1)
        except cv2.error:
            return None
        scale = math.sqrt(abs(float(np.linalg.det(m[:, :2]))))
        moved = float(np.linalg.norm(m @ ctr - uv))
        if rho < c.ecc_min or moved > c.anchor_radius_frac * size or not 0.5 < scale * size0 / size < 2.0:
            return None
        return m, float(rho)

    def _redetect(self, img: np.ndarray, anchor: np.ndarray, size: float) -> tuple[np.ndarray, float, float]:
        """The seed template searched over the whole frame at three scales around ``size``: (uv, size, score)."""
        c = self.cfg
        h, w = img.shape[:2]
        best = (np.zeros(2, np.float32), size, -2.0)
        centre = np.array([(w - 1) / 2, (h - 1) / 2], np.float32)
        for k in (1 / c.scale_step, 1.0, c.scale_step):
            side = self._side(size * k)
            if side >= min(h, w):
                continue
            uv, sc = _match(img, self._resized(anchor, side), centre, max(h, w) / 2)
            if sc > best[2]:
                best = (uv, size * k, sc)
        return best

    def _follow(self, imgs: list[np.ndarray], grays: list[np.ndarray], t0: int, step: int, p0: np.ndarray,
                size0: float):
        """Yields (frame index, point, visible, fb error) from t0 (exclusive when step is -1) in one direction."""
        c = self.cfg
        t = len(imgs)
        p, size = p0.copy(), size0
        good = (t0, p0.copy(), size0)  # the last frame where the point was found: the forward-backward target
        side0 = self._side(size0)
        anchor = _patch(imgs[t0], p0, side0)
        pose0 = np.float32([[1, 0, p0[0] - (side0 - 1) / 2], [0, 1, p0[1] - (side0 - 1) / 2]])
        seed_gray = _patch(grays[t0], p0, side0)
        pose = pose0.copy()
        running = anchor
        velocity = np.zeros(2, np.float32)
        misses, lost = 0, False
        if step == 1:
            yield t0, p0, True, 0.0
        i = t0
        while 0 <= i + step < t:
            j = i + step
            if lost:
                uv, sz, sc = self._redetect(imgs[j], anchor, size)
                if sc >= c.redetect_score:
                    lost, misses, p, size, velocity = False, 0, uv, sz, np.zeros(2, np.float32)
                    pose = pose0.copy()
                    pose[:, :2] *= size / size0
                    pose[:, 2] += p - pose @ np.array([(side0 - 1) / 2, (side0 - 1) / 2, 1.0])
                    running = _patch(imgs[j], p, self._side(size))
                    good = (j, p.copy(), size)
                    yield j, p.copy(), True, np.nan
                else:
                    yield j, p.copy(), False, np.nan
                i = j
                continue
            pred = p + c.velocity_decay * velocity
            radius = c.search_frac * size + float(np.linalg.norm(velocity))
            ga, gp, gs = good
            uv, new_size, new_pose, score, fb = self._step(
                imgs[ga], gp, gs, imgs[j], grays[j], pred, size, running, (seed_gray, pose, size0), radius)
            if score >= c.min_score and fb <= max(1.5, c.fb_frac * size):
                velocity = ((uv - gp) / abs(j - ga)).astype(np.float32)
                p, size, pose, misses = uv.astype(np.float32), new_size, new_pose, 0
                running = _patch(imgs[j], p, self._side(size))
                good = (j, p.copy(), size)
                yield j, p.copy(), True, fb
            else:
                misses += 1
                p = (p + c.velocity_decay * velocity).astype(np.float32)  # coast on the prediction, unreported
                lost = misses >= c.lost_after
                yield j, p.copy(), False, fb
            i = j


TRACKERS.register(NAME, TemplateTracker)
