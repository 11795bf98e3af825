"""Drawing a trace on an image exactly as MolmoAct's released data loader does.

Points in [0, 255] map to pixels by ``rint(x * (W - 1) / 255)`` and ``rint(y * (H - 1) / 255)``, clipped to
the image; consecutive points are joined by OpenCV ``line`` segments of colour (0, 255, 255), thickness 2,
``LINE_AA``, drawn on an RGB array, so the pixels are cyan (the loader's comment says yellow; the array is RGB).
"""

from __future__ import annotations

import cv2
import numpy as np

TRACE_COLOR_RGB = (0, 255, 255)
TRACE_THICKNESS = 2


def trace_to_pixels(trace_uv255, height: int, width: int) -> np.ndarray:
    """int [k, 2] pixel coordinates (x, y) of trace points given in [0, 255]."""
    pts = np.asarray(trace_uv255, dtype=np.float64).reshape(-1, 2)
    x = np.clip(np.rint(pts[:, 0] * (width - 1) / 255.0), 0, width - 1)
    y = np.clip(np.rint(pts[:, 1] * (height - 1) / 255.0), 0, height - 1)
    return np.stack([x, y], axis=1).astype(np.int64)


def draw_trace(image_rgb: np.ndarray, trace_uv255) -> np.ndarray:
    """A copy of ``image_rgb`` (uint8 [H, W, 3]) with the trace drawn on it."""
    out = np.ascontiguousarray(image_rgb.copy())
    h, w = out.shape[:2]
    px = trace_to_pixels(trace_uv255, h, w)
    for (x0, y0), (x1, y1) in zip(px[:-1], px[1:]):
        cv2.line(out, (int(x0), int(y0)), (int(x1), int(y1)), TRACE_COLOR_RGB, TRACE_THICKNESS, cv2.LINE_AA)
    return out
