"""Calibration-free camera fit: a 3x4 projection from end-effector positions and a few located gripper points.

Nearly every robot dataset records the end effector's position, and its camera is fixed within an episode (often
over the whole dataset). A handful of located points (a pointing VLM's, a detector's, ECoT's) then fix the camera,
and the camera gives the gripper on every step: a pinhole projection ``w [u, v, 1]^T = P [x, y, z, 1]^T``.

The fit (pure numpy):
1. RANSAC over minimal samples of 6 correspondences, each solved by the normalised DLT (Hartley's
   conditioning: centred points scaled to mean distance sqrt(2) in the image and sqrt(3) in space); a point is an
   inlier when its reprojection error is at most ``inlier_px`` and it lies in front of the camera. Outliers are
   the pointer's wrong answers.
2. The DLT again on all inliers, then Levenberg-Marquardt on the reprojection error over the 12 entries of P
   (the scale is fixed by renormalising), then the inliers once more.
3. Quality: enough points, enough inliers, inlier RMS within bound, and positions that span three dimensions (six
   points on a plane or a line do not fix a camera). A fit that fails any is ``ok = False`` with the reason; its
   projections are never used.

Residuals are in pixels of the stored primary image. The fitted P is decomposed into K [R | t] for the record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from armdata.annotators.locate.base import LOCATORS, LocateResult, check_frame_indices
from armdata.schemas.errors import RecordError
from armdata.schemas.records import StandardEpisode
from armdata.schemas.source import SourceConfig

MIN_SAMPLE = 6  # a 3x4 projection has 11 degrees of freedom: 5.5 correspondences, so 6


@dataclass(frozen=True)
class FitSettings:
    """How strict the fit is. Pixel thresholds default to fractions of the image diagonal so that one setting
    suits 64x64 Bridge frames and 320x256 RT-1 frames alike."""

    inlier_px: float | None = None  # reprojection error of an inlier; None: max(2 px, 2% of the image diagonal)
    max_rms_px: float | None = None  # inlier RMS above this is a poor fit; None: 0.6 * inlier_px
    min_points: int = 8  # fewer located points than this cannot be checked against each other
    min_inlier_fraction: float = 0.5  # RANSAC must explain at least this share of the points (and of an episode's)
    min_episode_points: int = 3  # an episode with this many points is checked against a shared camera on its own
    max_disagreeing_episodes: float = 0.2  # past this share of checked episodes, one camera does not fit the source
    min_spread: float = 0.02  # smallest / largest principal spread of the inliers' positions: below is flat
    ransac_iters: int = 500  # minimal samples tried (6 of 60% inliers: 1 in 21 clean; 500 tries miss ~1e-10)
    refine_iters: int = 30  # Levenberg-Marquardt steps
    extrapolate_margin: float = 0.25  # positions beyond the inliers' box by this share of its size are flagged
    seed: int = 0

    def thresholds(self, height: int, width: int) -> tuple[float, float]:
        inlier = self.inlier_px if self.inlier_px is not None else max(2.0, 0.02 * math.hypot(height, width))
        rms = self.max_rms_px if self.max_rms_px is not None else 0.6 * inlier
        return float(inlier), float(rms)


@dataclass(frozen=True)
class CameraFit:
    """A fitted camera and how well it explains its points.

    projection:   3x4 P (pixels of the stored ``image_size`` [height, width]), scaled so ||P|| = 1 and points
                  in front of the camera have w > 0
    intrinsics:   3x3 K from P = K [R | t] (K[2][2] = 1); rotation 3x3 R; translation t; camera_centre in the
                  end-effector frame
    n_points:     points used; n_inliers: points within inlier_px; residual_* over the inliers, in pixels
    ok:           whether the fit may be used; problem: why not ("" when ok)
    bounds:       [[min x, y, z], [max x, y, z]] of the inliers' positions (projections far outside are flagged)
    """

    projection: list[list[float]]
    image_size: list[int]
    n_points: int
    n_inliers: int
    inlier_px: float
    residual_rms_px: float
    residual_median_px: float
    residual_p95_px: float
    ok: bool
    problem: str = ""
    intrinsics: list[list[float]] = field(default_factory=list)
    rotation: list[list[float]] = field(default_factory=list)
    translation: list[float] = field(default_factory=list)
    camera_centre: list[float] = field(default_factory=list)
    bounds: list[list[float]] = field(default_factory=list)
    spread: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CameraFit":
        return cls(**d)

    @property
    def p(self) -> np.ndarray:
        return np.asarray(self.projection, dtype=np.float64)


@dataclass(frozen=True)
class FitOutcome:
    """The fit and, per input point, its reprojection error (px, inf behind the camera), inlier mark, and error
    vector (projection minus point, NaN behind the camera)."""

    camera: CameraFit
    residuals: np.ndarray
    inliers: np.ndarray
    errors_uv: np.ndarray | None = None


def project(p: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions [N, 3] -> pixels [N, 2] and w [N] (w <= 0: behind the camera; pixels NaN there)."""
    x = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    h = np.concatenate([x, np.ones((len(x), 1))], axis=1) @ np.asarray(p, dtype=np.float64).T
    w = h[:, 2]
    uv = np.full((len(x), 2), np.nan)
    front = w > 1e-12
    uv[front] = h[front, :2] / w[front, None]
    return uv, w


def _normaliser(pts: np.ndarray) -> np.ndarray:
    """Hartley's similarity: centre the points and scale their mean distance to sqrt(dim)."""
    d = pts.shape[1]
    c = pts.mean(axis=0)
    s = np.sqrt(d) / max(np.linalg.norm(pts - c, axis=1).mean(), 1e-12)
    t = np.eye(d + 1)
    t[:d, :d] *= s
    t[:d, d] = -s * c
    return t


def _homog(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)


def dlt(xyz: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """The normalised DLT: P (3x4, ||P|| = 1) from >= 6 correspondences."""
    t3, t2 = _normaliser(xyz), _normaliser(uv)
    xn = _homog(xyz) @ t3.T
    un = _homog(uv) @ t2.T
    un = un[:, :2] / un[:, 2:]
    n = len(xn)
    a = np.zeros((2 * n, 12))
    a[0::2, 0:4] = xn
    a[0::2, 8:12] = -un[:, :1] * xn
    a[1::2, 4:8] = xn
    a[1::2, 8:12] = -un[:, 1:2] * xn
    pn = np.linalg.svd(a, full_matrices=False)[2][-1].reshape(3, 4)
    p = np.linalg.inv(t2) @ pn @ t3
    return _orient(p / np.linalg.norm(p), xyz)


def _orient(p: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Sign of P such that most of the points lie in front (w > 0)."""
    _, w = project(p, xyz)
    return -p if np.sum(w > 0) < np.sum(w < 0) else p


def residuals(p: np.ndarray, xyz: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Reprojection error in pixels per point; inf behind the camera."""
    pred, w = project(p, xyz)
    r = np.linalg.norm(pred - uv, axis=1)
    r[~(w > 0)] = np.inf
    return r


def refine(p: np.ndarray, xyz: np.ndarray, uv: np.ndarray, iters: int = 30) -> np.ndarray:
    """Levenberg-Marquardt on the reprojection error over P's 12 entries (in normalised coordinates)."""
    if len(xyz) < MIN_SAMPLE:
        return p
    t3, t2 = _normaliser(xyz), _normaliser(uv)
    xn = _homog(xyz) @ t3.T
    un = (_homog(uv) @ t2.T)[:, :2]
    q = (t2 @ p @ np.linalg.inv(t3)).reshape(-1)
    q /= np.linalg.norm(q)

    def resid(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = q.reshape(3, 4)
        a, b, w = xn @ m[0], xn @ m[1], xn @ m[2]
        w = np.where(np.abs(w) < 1e-12, 1e-12, w)
        r = np.concatenate([a / w - un[:, 0], b / w - un[:, 1]])
        j = np.zeros((2 * len(xn), 12))
        j[: len(xn), 0:4] = xn / w[:, None]
        j[: len(xn), 8:12] = -(a / w**2)[:, None] * xn
        j[len(xn):, 4:8] = xn / w[:, None]
        j[len(xn):, 8:12] = -(b / w**2)[:, None] * xn
        return r, j

    lam = 1e-3
    r, j = resid(q)
    cost = float(r @ r)
    for _ in range(iters):
        g = j.T @ r
        h = j.T @ j
        step = np.linalg.solve(h + lam * np.diag(np.diag(h) + 1e-12), -g)
        q_new = q + step
        q_new /= np.linalg.norm(q_new)
        r_new, j_new = resid(q_new)
        c_new = float(r_new @ r_new)
        if c_new < cost:
            q, r, j, lam = q_new, r_new, j_new, max(lam / 10, 1e-9)
            if cost - c_new < 1e-12 * max(cost, 1e-12):
                cost = c_new
                break
            cost = c_new
        else:
            lam *= 10
            if lam > 1e8:
                break
    out = np.linalg.inv(t2) @ q.reshape(3, 4) @ t3
    return _orient(out / np.linalg.norm(out), xyz)


def decompose(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """P = K [R | t] with K upper triangular, positive diagonal, K[2, 2] = 1; and the camera centre."""
    m = p[:, :3]
    # RQ of M from QR of the row-reversed transpose.
    flip = np.eye(3)[::-1]
    q, r = np.linalg.qr((flip @ m).T)
    k = flip @ r.T @ flip
    rot = flip @ q.T
    s = np.diag(np.sign(np.diag(k)))
    k, rot = k @ s, s @ rot
    scale = k[2, 2]
    t = np.linalg.solve(k, p[:, 3])
    if np.linalg.det(rot) < 0:  # P's overall sign: keep a proper rotation
        rot, t = -rot, -t
    centre = -np.linalg.solve(m, p[:, 3])
    return k / scale, rot, t, centre


def _spread(xyz: np.ndarray) -> float:
    if len(xyz) < 3:
        return 0.0
    s = np.linalg.svd(xyz - xyz.mean(axis=0), compute_uv=False)
    return float(s[-1] / s[0]) if s[0] > 0 else 0.0


def _ransac(xyz: np.ndarray, uv: np.ndarray, thr: float, s: FitSettings) -> np.ndarray | None:
    rng = np.random.default_rng(s.seed)
    n = len(xyz)
    best, best_score = None, -np.inf
    for _ in range(s.ransac_iters):
        idx = rng.choice(n, MIN_SAMPLE, replace=False)
        if _spread(xyz[idx]) < 1e-3:
            continue
        p = dlt(xyz[idx], uv[idx])
        r = residuals(p, xyz, uv)
        # MSAC: inliers score by how well they fit, so among equal counts the tighter camera wins.
        score = float(np.sum(np.maximum(0.0, 1.0 - (np.minimum(r, thr) / thr) ** 2)))
        if score > best_score:
            best, best_score = p, score
    return best


def fit_camera(xyz: np.ndarray, uv: np.ndarray, height: int, width: int, settings: FitSettings | None = None) -> FitOutcome:
    """Fit P to positions [N, 3] (end-effector frame, any unit) and pixels [N, 2] of a height x width image."""
    s = settings or FitSettings()
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(xyz).all(axis=1) & np.isfinite(uv).all(axis=1)
    inlier_px, max_rms = s.thresholds(height, width)
    n = int(finite.sum())
    res_all = np.full(len(xyz), np.inf)
    inl_all = np.zeros(len(xyz), bool)

    def poor(problem: str, p: np.ndarray | None = None, inl: np.ndarray | None = None) -> FitOutcome:
        cam = CameraFit(
            projection=(p if p is not None else np.zeros((3, 4))).tolist(), image_size=[height, width], n_points=n,
            n_inliers=int(inl.sum()) if inl is not None else 0, inlier_px=inlier_px, residual_rms_px=float("nan"),
            residual_median_px=float("nan"), residual_p95_px=float("nan"), ok=False, problem=problem,
        )
        return FitOutcome(cam, res_all, inl_all)

    if n < max(s.min_points, MIN_SAMPLE):
        return poor(f"{n} usable points; a fit needs at least {max(s.min_points, MIN_SAMPLE)}")
    x, u = xyz[finite], uv[finite]
    if _spread(x) < s.min_spread:
        return poor(f"the positions are flat (spread {_spread(x):.4f} < {s.min_spread}): they do not fix a camera")
    p = _ransac(x, u, inlier_px, s)
    if p is None:
        return poor("no sample of 6 points spans three dimensions")
    for _ in range(2):
        inl = residuals(p, x, u) <= inlier_px
        if inl.sum() < MIN_SAMPLE:
            break
        p = refine(dlt(x[inl], u[inl]), x[inl], u[inl], s.refine_iters)
    r = residuals(p, x, u)
    inl = r <= inlier_px
    res_all[finite], inl_all[finite] = r, inl
    err_all = np.full((len(xyz), 2), np.nan)
    err_all[finite] = project(p, x)[0] - u
    ri = r[inl]
    k, rot, t, centre = decompose(p)
    cam = CameraFit(
        projection=p.tolist(), image_size=[height, width], n_points=n, n_inliers=int(inl.sum()), inlier_px=inlier_px,
        residual_rms_px=float(np.sqrt(np.mean(ri**2))) if ri.size else float("nan"),
        residual_median_px=float(np.median(ri)) if ri.size else float("nan"),
        residual_p95_px=float(np.percentile(ri, 95)) if ri.size else float("nan"),
        ok=True, intrinsics=k.tolist(), rotation=rot.tolist(), translation=t.tolist(), camera_centre=centre.tolist(),
        bounds=[x[inl].min(axis=0).tolist(), x[inl].max(axis=0).tolist()] if inl.any() else [],
        spread=_spread(x[inl]) if inl.sum() >= 3 else 0.0,
    )
    problem = ""
    need = max(s.min_points, math.ceil(s.min_inlier_fraction * n))
    if cam.n_inliers < need:
        problem = f"{cam.n_inliers} of {n} points agree with the best camera (need {need}): the camera may move"
    elif cam.residual_rms_px > max_rms:
        problem = f"inlier RMS {cam.residual_rms_px:.2f} px > {max_rms:.2f} px"
    elif cam.spread < s.min_spread:
        problem = f"the inliers' positions are flat (spread {cam.spread:.4f} < {s.min_spread})"
    if problem:
        cam = CameraFit(**{**cam.to_dict(), "ok": False, "problem": problem})
    return FitOutcome(cam, res_all, inl_all, err_all)


def extrapolated(camera: CameraFit, xyz: np.ndarray, margin: float) -> np.ndarray:
    """bool [N]: positions beyond the inliers' box by more than ``margin`` of its size on some axis."""
    x = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    if not camera.bounds:
        return np.ones(len(x), bool)
    lo, hi = (np.asarray(b) for b in camera.bounds)
    pad = margin * np.maximum(hi - lo, 1e-9)
    return ((x < lo - pad) | (x > hi + pad)).any(axis=1)


# -- the locator -------------------------------------------------------------------------------------------------

NAME = "fit"

# Flags on steps (stable strings: the audit and the index count them).
FLAG_FIT_POOR = "fit_poor"  # the fit failed its checks, or the episode's own points disagree with it: no point
FLAG_FIT_MISSING = "fit_missing"  # no fit covers the episode (no located points for its source or episode)
FLAG_POINT_OUTLIER = "fit_point_outlier"  # the table's point at this step disagrees with the fit (a wrong answer)
FLAG_FIT_EXTRAPOLATED = "fit_extrapolated"  # the end effector lies far outside the positions the fit saw
FIT_FLAGS = (FLAG_FIT_POOR, FLAG_FIT_MISSING, FLAG_POINT_OUTLIER, FLAG_FIT_EXTRAPOLATED)


def fit_key(source: str, episode_key: str, per_episode: bool) -> str:
    """Which fit covers an episode: its source's, or its own where the source's camera moves between episodes."""
    return f"{source}__{episode_key}" if per_episode else source


class FitLocator:
    """Projects ``episode.eef_position`` through the camera fitted to a points table (see ``fit_camera``).

    cameras:      fit key (``fit_key``) -> ``CameraFit.to_dict()``
    points:       ``{source}__{episode}`` -> {"steps": [...], "inlier": [...], "residual_px": [...]}: the table's
                  points of that episode and whether the fit agrees with each
    per_episode:  source names whose cameras were fitted per episode
    """

    name = NAME

    def __init__(
        self,
        cameras: dict[str, dict] | None = None,
        points: dict[str, dict] | None = None,
        per_episode: Sequence[str] = (),
        extrapolate_margin: float = 0.25,
    ) -> None:
        self.cameras = {k: CameraFit.from_dict(v) for k, v in (cameras or {}).items()}
        self.points = dict(points or {})
        self.per_episode = frozenset(per_episode)
        self.extrapolate_margin = extrapolate_margin
        self.calls = 0

    def setup(self) -> None:
        """Nothing to load: the fit was made before the job (``armdata.beam_jobs.fit_cameras``)."""

    def provenance(self) -> dict:
        return {"cameras": len(self.cameras), "per_episode_sources": sorted(self.per_episode),
                "extrapolate_margin": self.extrapolate_margin}

    def locate(
        self, episode: StandardEpisode, source: SourceConfig, frame_indices: Sequence[int]
    ) -> list[LocateResult]:
        idx = check_frame_indices(episode, frame_indices)
        cam = self.cameras.get(fit_key(episode.source, episode.episode_key, episode.source in self.per_episode))
        if cam is None:
            return [LocateResult.not_found(NAME, "no_fit", (FLAG_FIT_MISSING,)) for _ in idx]
        pts = self.points.get(f"{episode.source}__{episode.episode_key}", {})
        if not cam.ok:
            return [LocateResult.not_found(NAME, "fit_poor", (FLAG_FIT_POOR,)) for _ in idx]
        if not pts.get("episode_agrees", True):
            return [LocateResult.not_found(NAME, "episode_disagrees_with_fit", (FLAG_FIT_POOR,)) for _ in idx]
        if episode.eef_position is None:
            raise RecordError(source.name, episode.episode_key, None, "state.eef_position", "missing_eef_position",
                              "the fit locator needs state.eef_position in the source file")
        eef = np.asarray(episode.eef_position, dtype=np.float64).reshape(episode.num_steps, -1)
        h, w = episode.image_size
        if [h, w] != list(cam.image_size):
            raise RecordError(source.name, episode.episode_key, None, "primary", "image_size_changed",
                              f"the camera was fitted on {cam.image_size[1]}x{cam.image_size[0]} frames, this episode "
                              f"has {w}x{h}")
        uv, depth = project(cam.p, eef[idx])
        far = extrapolated(cam, eef[idx], self.extrapolate_margin)
        outlier = {int(s) for s, ok in zip(pts.get("steps", []), pts.get("inlier", [])) if not ok}
        conf = float(np.clip(1.0 - cam.residual_rms_px / (2.0 * cam.inlier_px), 0.2, 1.0))
        out = []
        for (u, v), z, t, f in zip(uv, depth, idx, far):
            flags = ((FLAG_POINT_OUTLIER,) if int(t) in outlier else ()) + ((FLAG_FIT_EXTRAPOLATED,) if f else ())
            if not np.isfinite(eef[t]).all():
                out.append(LocateResult.not_found(NAME, "eef_state_not_finite", flags))
            elif not z > 0:
                out.append(LocateResult.not_found(NAME, "behind_camera", flags))
            elif not (0 <= u <= w - 1 and 0 <= v <= h - 1):
                out.append(LocateResult.not_found(NAME, "outside_image", flags))
            else:
                out.append(LocateResult((float(u), float(v)), conf * (0.7 if f else 1.0), NAME, flags=flags))
        return out


LOCATORS.register(NAME, FitLocator)
