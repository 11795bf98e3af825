"""The ``projection`` locator: the end-effector state projected through the source file's calibration.

Pinhole model: ``p_cam = camera_from_base @ [x, y, z, 1]`` (camera x right, y down, z forward), then
``u = fx * X / Z + cx``, ``v = fy * Y / Z + cy``. Intrinsics given for another image size are scaled to the primary
image's size (a source may store frames resized from the calibrated resolution). A point behind the camera or
outside the image is "not found": the gripper is not visible there, and a trace must not invent it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from armdata.annotators.locate.base import LOCATORS, LocateResult, check_frame_indices
from armdata.schemas.errors import RecordError
from armdata.schemas.records import StandardEpisode
from armdata.schemas.source import Calibration, SourceConfig

NAME = "projection"


def project_points(
    points_base: np.ndarray, calibration: Calibration, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Base-frame points [N, 3] -> pixels [N, 2] (float64) and depth Z [N] in the camera frame.

    Pixels are in the (height, width) image, intrinsics rescaled from the calibrated size. Points with Z <= 0 get
    NaN pixels.
    """
    p = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(calibration.camera_from_base, dtype=np.float64)
    cam = p @ t[:3, :3].T + t[:3, 3]
    k = calibration.intrinsics
    sx, sy = width / k.width, height / k.height
    z = cam[:, 2]
    uv = np.full((p.shape[0], 2), np.nan)
    front = z > 1e-9
    uv[front, 0] = (k.fx * cam[front, 0] / z[front] + k.cx) * sx
    uv[front, 1] = (k.fy * cam[front, 1] / z[front] + k.cy) * sy
    return uv, z


class ProjectionLocator:
    """Projects ``episode.eef_position`` (float [T, 3], robot base frame, metres) through ``source.calibration``.

    gripper_size_m: the gripper's physical size; its apparent size ``fx * size / Z`` sizes the tracker's window.
    confidence: a calibrated projection is exact up to calibration error and the EEF-to-gripper-centre offset;
    settings listed in the source's ``unconfirmed`` (calibration) lower it to ``unconfirmed_confidence``.
    """

    name = NAME

    def __init__(
        self, gripper_size_m: float = 0.08, confidence: float = 1.0, unconfirmed_confidence: float = 0.5
    ) -> None:
        self.gripper_size_m = gripper_size_m
        self.confidence = confidence
        self.unconfirmed_confidence = unconfirmed_confidence
        self.calls = 0

    def setup(self) -> None:
        """Nothing to load."""

    def locate(
        self, episode: StandardEpisode, source: SourceConfig, frame_indices: Sequence[int]
    ) -> list[LocateResult]:
        idx = check_frame_indices(episode, frame_indices)
        if source.calibration is None:
            raise RecordError(
                source.name, episode.episode_key, None, "calibration", "missing_calibration",
                "the projection locator needs calibration (intrinsics, camera_from_base) in the source file",
            )
        if episode.eef_position is None:
            raise RecordError(
                source.name, episode.episode_key, None, "state.eef_position", "missing_eef_position",
                "the projection locator needs state.eef_position in the source file",
            )
        eef = np.asarray(episode.eef_position, dtype=np.float64)
        if eef.shape != (episode.num_steps, 3):
            raise RecordError(
                source.name, episode.episode_key, None, "state.eef_position", "bad_shape",
                f"eef_position must be [T={episode.num_steps}, 3], got {eef.shape}",
            )
        h, w = episode.image_size
        uv, z = project_points(eef[idx], source.calibration, h, w)
        k = source.calibration.intrinsics
        conf = self.unconfirmed_confidence if any("calibration" in u for u in source.unconfirmed) else self.confidence
        out = []
        for (u, v), depth, t in zip(uv, z, idx):
            if not np.isfinite(eef[t]).all():
                out.append(LocateResult.not_found(NAME, "eef_state_not_finite"))
            elif not depth > 0:
                out.append(LocateResult.not_found(NAME, "behind_camera"))
            elif not (0 <= u <= w - 1 and 0 <= v <= h - 1):
                out.append(LocateResult.not_found(NAME, "outside_image"))
            else:
                size = float(k.fx * (w / k.width) * self.gripper_size_m / depth)
                out.append(LocateResult((float(u), float(v)), conf, NAME, size_px=size))
        return out


LOCATORS.register(NAME, ProjectionLocator)
