"""The ``lk`` tracker: OpenCV pyramidal Lucas-Kanade, checked forward-backward, re-seeded near the point.

Why each part:
- The window is sized to the gripper's apparent size (from the locator, else a fraction of the width): LK assumes
  one motion inside its window, and the gripper is the thing that moves.
- Every step is checked forward-backward (track t -> t+1, then back): LK keeps reporting status 1 on a patch it
  lost at a coarse pyramid level, and the round-trip error exposes it.
- Support features (``goodFeaturesToTrack`` in the window around the point) carry the point across a step where
  its own patch fails the check; features whose motion disagrees with the point's (background) are dropped, and
  new ones are seeded near the last point when too few remain.
- A point whose own patch and support features all fail is lost: it stays invisible for the rest of that
  direction rather than being guessed (the keyframe mode re-anchors it from the pointer).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from armdata.annotators.track.base import TRACKERS, TrackResult, check_inputs

NAME = "lk"


@dataclass(frozen=True)
class LKConfig:
    """Settings of the LK tracker, each with its reason."""

    default_size_frac: float = 0.08  # gripper size when no locator knows it, as a fraction of the image width
    win_frac: float = 0.5  # window side / gripper size: a window inside the gripper sees only its motion, not the background's
    min_win: int = 9  # below this LK has too few gradients to solve for motion
    max_win: int = 63  # above this the window holds mostly background
    max_level: int = 3  # most pyramid levels; fewer where the gripper is small (see ``levels``)
    level_span: float = 2.0  # at the coarsest level the window may cover at most this many gripper sizes
    fb_thresh_px: float = 1.0  # forward-backward round-trip error above this marks a step as failed
    max_features: int = 24  # support features kept around the point
    min_features: int = 4  # re-seed when fewer survive
    feature_quality: float = 0.01  # goodFeaturesToTrack quality level (relative to the best corner)
    agree_px: float = 1.5  # a support feature whose step motion differs from the point's by more is background
    search_frac: float = 1.5  # correlation search reaches this many gripper sizes around the predicted point
    match_min_score: float = 0.6  # below this correlation the patch is not in the search area


def _odd(x: float, lo: int, hi: int) -> int:
    w = int(round(x))
    w = max(lo, min(hi, w))
    return w if w % 2 else w + 1


class LKTracker:
    """Pyramidal LK with forward-backward checks and re-seeded support features; see the module docstring."""

    name = NAME

    def __init__(self, cfg: LKConfig | None = None, **kwargs: Any) -> None:
        self.cfg = cfg if cfg is not None else LKConfig(**kwargs)
        self._level = self.cfg.max_level
        self._size = 0.0

    def setup(self) -> None:
        """Nothing to load (OpenCV only)."""

    def provenance(self) -> dict[str, Any]:
        return {"tracker": NAME, "opencv": cv2.__version__, **asdict(self.cfg)}

    def gripper_size(self, size_px: float | None, width: int) -> float:
        """size_px where the locator knows it, else ``default_size_frac`` of the image width."""
        return self.cfg.default_size_frac * width if size_px is None or not math.isfinite(size_px) else float(size_px)

    def window(self, size: float) -> int:
        """The LK window side (odd) for a gripper of ``size`` pixels."""
        return _odd(size * self.cfg.win_frac, self.cfg.min_win, self.cfg.max_win)

    def levels(self, size: float, win: int) -> int:
        """Pyramid levels for a gripper of size_px: at level L the window covers win * 2^L pixels, and once that
        is mostly static background the coarse estimate pulls the point to zero motion (large motions are
        handled by the motion prior and the correlation search instead)."""
        span = self.cfg.level_span * size / win
        return int(min(self.cfg.max_level, max(0, math.floor(math.log2(span))) if span >= 1 else 0))

    def track(self, frames: np.ndarray, queries: np.ndarray, size_px: float | None = None) -> TrackResult:
        frames, q = check_inputs(frames, queries)
        t, h, w = frames.shape[:3]
        n = q.shape[0]
        tracks = np.zeros((t, n, 2), dtype=np.float32)
        visible = np.zeros((t, n), dtype=bool)
        if n == 0 or t == 0:
            return TrackResult(tracks, visible)
        self._size = self.gripper_size(size_px, w)
        win = self.window(self._size)
        self._level = self.levels(self._size, win)
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        for j in range(n):
            t0, u0, v0 = int(q[j, 0]), float(q[j, 1]), float(q[j, 2])
            for step in (1, -1):
                path, vis = self._follow(gray, t0, step, np.array([u0, v0], dtype=np.float32), win, h, w)
                for k, (p, ok) in enumerate(zip(path, vis)):
                    tracks[t0 + step * k, j] = p
                    visible[t0 + step * k, j] = ok
        return TrackResult(tracks, visible)

    # -- one point, one direction ------------------------------------------------------------------------------
    def _seed(self, gray: np.ndarray, p: np.ndarray, win: int, h: int, w: int, have: np.ndarray) -> np.ndarray:
        """New support features within the window around p, away from the ones already held."""
        cfg = self.cfg
        want = cfg.max_features - len(have)
        if want <= 0:
            return np.zeros((0, 2), np.float32)
        mask = np.zeros((h, w), np.uint8)
        cv2.circle(mask, (int(round(p[0])), int(round(p[1]))), max(2, win // 2), 255, -1)
        for f in have:
            cv2.circle(mask, (int(round(f[0])), int(round(f[1]))), 2, 0, -1)
        pts = cv2.goodFeaturesToTrack(gray, want, cfg.feature_quality, 2, mask=mask)
        return np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2).astype(np.float32)

    def _lk(
        self, a: np.ndarray, b: np.ndarray, pts: np.ndarray, win: int, guess: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """pts moved from image a to b (starting from ``guess`` where given), and which passed the
        forward-backward check."""
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
        p0 = pts.reshape(-1, 1, 2).astype(np.float32)
        kw = dict(winSize=(win, win), maxLevel=self._level, criteria=crit)
        if guess is None:
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **kw)
        else:
            p1 = guess.reshape(-1, 1, 2).astype(np.float32).copy()
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, p1, flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **kw)
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, p0.copy(), flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **kw)
        fb = np.linalg.norm((p0r - p0).reshape(-1, 2), axis=1)
        ok = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1) & (fb < self.cfg.fb_thresh_px)
        return p1.reshape(-1, 2), ok

    def _match(
        self, a: np.ndarray, b: np.ndarray, p: np.ndarray, tsize: int, centre: np.ndarray
    ) -> np.ndarray | None:
        """Where the gripper-sized patch around p in a lies in b, by normalised cross-correlation within
        ``search_frac`` patch sizes of ``centre`` (the motion prior's prediction): a coarse guess for LK when the
        motion was too large for its pyramid. A whole-gripper template is less ambiguous than the LK window on a
        repetitive texture."""
        h, w = a.shape
        r = tsize // 2
        x, y = int(round(p[0])), int(round(p[1]))
        if x - r < 0 or y - r < 0 or x + r + 1 > w or y + r + 1 > h:
            return None
        tmpl = a[y - r : y + r + 1, x - r : x + r + 1]
        if float(tmpl.std()) < 1e-3:
            return None
        s = int(round(self.cfg.search_frac * tsize))
        cx, cy = int(round(centre[0])), int(round(centre[1]))
        x0, y0 = max(0, cx - r - s), max(0, cy - r - s)
        x1, y1 = min(w, cx + r + 1 + s), min(h, cy + r + 1 + s)
        region = b[y0:y1, x0:x1]
        if region.shape[0] < tmpl.shape[0] or region.shape[1] < tmpl.shape[1]:
            return None
        score = cv2.matchTemplate(region, tmpl, cv2.TM_CCOEFF_NORMED)
        _, best, _, loc = cv2.minMaxLoc(score)
        if best < self.cfg.match_min_score:
            return None
        return np.array([x0 + loc[0] + r + (p[0] - x), y0 + loc[1] + r + (p[1] - y)], np.float32)

    def _follow(
        self, gray: list[np.ndarray], t0: int, step: int, p: np.ndarray, win: int, h: int, w: int
    ) -> tuple[list[np.ndarray], list[bool]]:
        cfg = self.cfg
        tsize = _odd(self._size, cfg.min_win, cfg.max_win)
        t = len(gray)
        path, vis = [p.copy()], [True]
        feats = self._seed(gray[t0], p, win, h, w, np.zeros((0, 2), np.float32))
        # A support feature may carry the point only once it has moved with it (background features never do).
        trusted = np.zeros(len(feats), bool)
        lost = False
        velocity = np.zeros(2, np.float32)
        i = t0
        while 0 <= i + step < t:
            j = i + step
            if lost:
                path.append(p.copy())
                vis.append(False)
                i = j
                continue
            pts = np.vstack([p[None], feats]) if len(feats) else p[None]
            # First guess: every point keeps the point's last motion (a gripper moves smoothly).
            moved, ok = self._lk(gray[i], gray[j], pts, win, pts + velocity)
            if not ok[0]:
                # Too large a motion for the pyramid: find the patch by correlation and refine from there.
                coarse = self._match(gray[i], gray[j], p, tsize, p + velocity)
                if coarse is not None:
                    m2, ok2 = self._lk(gray[i], gray[j], pts, win, pts + (coarse - p))
                    better = ok2 & ~ok
                    moved[better], ok[better] = m2[better], True
            ok &= (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= h - 1)
            d = moved - pts
            f_ok = ok[1:]
            if ok[0]:
                new_p = moved[0]
                agree = np.linalg.norm(d[1:] - d[0], axis=1) <= cfg.agree_px
                f_ok &= agree
                trusted = trusted | agree
            elif (f_ok & trusted).sum() >= max(2, cfg.min_features // 2):
                carry = f_ok & trusted
                motion = np.median(d[1:][carry], axis=0)
                new_p = p + motion
                f_ok &= np.linalg.norm(d[1:] - motion, axis=1) <= cfg.agree_px
            else:
                lost = True
                path.append(p.copy())
                vis.append(False)
                i = j
                continue
            velocity = (new_p - p).astype(np.float32)
            p = new_p.astype(np.float32)
            feats, trusted = moved[1:][f_ok], trusted[f_ok]
            if len(feats) < cfg.min_features:
                extra = self._seed(gray[j], p, win, h, w, feats)
                feats = np.vstack([feats, extra]).astype(np.float32)
                trusted = np.concatenate([trusted, np.zeros(len(extra), bool)])
            path.append(p.copy())
            vis.append(True)
            i = j
        return path, vis


TRACKERS.register(NAME, LKTracker)
