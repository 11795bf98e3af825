"""Point tags of both Molmo generations, parsed into pixels; malformed answers are "no point", never a guess.

Molmo 1 (Molmo-7B-D-0924, MolmoAct's pointer) writes percent of width/height:
    ``<point x="61.5" y="40.6" alt="robot gripper">robot gripper</point>``
    ``<points x1="61.5" y1="40.6" x2="70.0" y2="41.2" alt="...">...</points>``
Molmo 2 writes ``coords`` with an image (or frame) index, then ``point_id x y`` triplets in thousandths of the
width/height (3-4 digits); groups for further images/frames follow after ``;`` (or a tab):
    ``<points alt="robot gripper" coords="1 1 461 527">robot gripper</points>``
    ``<points coords="1 1 461 527 2 481 521">...</points>``

Values outside [0, 100] (Molmo 1) or [0, 1000] (Molmo 2) are dropped and counted: a model that points outside
the image has not found the gripper in it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# One opening tag (attributes up to '>' or '/>'), point or points (Molmo 1 and 2), tracks (Molmo 2 video).
_TAG_RE = re.compile(r"<\s*(points?|tracks)\b([^<>]*?)/?\s*>", re.IGNORECASE)
_ATTR_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\"([^\"]*)\"")
_NUM_RE = re.compile(r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)\s*$")
_INT_RE = re.compile(r"\d+(?:\.\d+)?")

MOLMO1 = "molmo1"
MOLMO2 = "molmo2"


@dataclass(frozen=True)
class ParsedPoint:
    """One point in pixels of the image it was asked about (u right, v down); image_index is 1-based."""

    u: float
    v: float
    image_index: int = 1
    fmt: str = MOLMO1


@dataclass(frozen=True)
class ParseOutcome:
    """Every point found in an answer, the count of values dropped as out of range or malformed, and notes."""

    points: list[ParsedPoint] = field(default_factory=list)
    dropped: int = 0
    notes: list[str] = field(default_factory=list)


def _num(s: str) -> float | None:
    if not _NUM_RE.match(s):
        return None
    x = float(s)
    return x if math.isfinite(x) else None


def _to_pixel(frac: float, size: int) -> float:
    # A fraction of the extent; 100% is the image's far edge, which lies half a pixel past the last centre.
    return min(frac * size, size - 1.0)


def _molmo1(attrs: dict[str, str], width: int, height: int, out: list[ParsedPoint], notes: list[str]) -> int:
    dropped = 0
    keys = [("x", "y")] if "x" in attrs or "y" in attrs else []
    n = 1
    while f"x{n}" in attrs or f"y{n}" in attrs:
        keys.append((f"x{n}", f"y{n}"))
        n += 1
    for kx, ky in keys:
        x, y = _num(attrs.get(kx, "")), _num(attrs.get(ky, ""))
        if x is None or y is None:
            notes.append(f"malformed {kx}/{ky}")
            dropped += 1
        elif not (0.0 <= x <= 100.0 and 0.0 <= y <= 100.0):
            notes.append(f"out of range {kx}={x} {ky}={y}")
            dropped += 1
        else:
            out.append(ParsedPoint(_to_pixel(x / 100.0, width), _to_pixel(y / 100.0, height), 1, MOLMO1))
    return dropped


def _molmo2(coords: str, width: int, height: int, out: list[ParsedPoint], notes: list[str]) -> int:
    dropped = 0
    for group in re.split(r"[;\t]", coords):
        nums = _INT_RE.findall(group)
        if not nums:
            continue
        if len(nums) < 4:
            notes.append(f"short coords group {group.strip()!r}")
            dropped += 1
            continue
        image_index = int(float(nums[0]))
        rest = nums[1:]
        if len(rest) % 3:
            notes.append(f"coords group with {len(rest)} values after the image index (not triplets)")
            dropped += 1
            rest = rest[: len(rest) - len(rest) % 3]
        for i in range(0, len(rest), 3):
            x, y = float(rest[i + 1]), float(rest[i + 2])
            if not (0.0 <= x <= 1000.0 and 0.0 <= y <= 1000.0):
                notes.append(f"out of range x={x} y={y}")
                dropped += 1
                continue
            out.append(ParsedPoint(_to_pixel(x / 1000.0, width), _to_pixel(y / 1000.0, height), image_index, MOLMO2))
    return dropped


def parse_points(text: str, width: int, height: int) -> ParseOutcome:
    """Every point tag in ``text`` (either generation), in pixels of a width x height image."""
    points: list[ParsedPoint] = []
    notes: list[str] = []
    dropped = 0
    for m in _TAG_RE.finditer(text or ""):
        attrs = {k.lower(): v for k, v in _ATTR_RE.findall(m.group(2))}
        if "coords" in attrs:
            dropped += _molmo2(attrs["coords"], width, height, points, notes)
        elif any(k[0] in "xy" and (k[1:].isdigit() or len(k) == 1) for k in attrs):
            dropped += _molmo1(attrs, width, height, points, notes)
        else:
            notes.append(f"<{m.group(1)}> tag without coordinates")
            dropped += 1
    return ParseOutcome(points, dropped, notes)


def choose_point(outcome: ParseOutcome, merge_px: float) -> tuple[tuple[float, float] | None, str]:
    """One gripper point from an answer, or None with the reason.

    One point: that point. Several within ``merge_px`` of their mean (two fingers of one gripper): their mean,
    noted. Several farther apart: ambiguous, so not found. None: "no_point" (or "out_of_range"/"malformed" when
    values were dropped).
    """
    pts = outcome.points
    if not pts:
        if outcome.dropped:
            kind = "out_of_range" if any(n.startswith("out of range") for n in outcome.notes) else "malformed"
            return None, kind
        return None, "no_point"
    if len(pts) == 1:
        return (pts[0].u, pts[0].v), ""
    uv = [(p.u, p.v) for p in pts]
    mu = (sum(u for u, _ in uv) / len(uv), sum(v for _, v in uv) / len(uv))
    spread = max(math.hypot(u - mu[0], v - mu[1]) for u, v in uv)
    if spread <= merge_px:
        return mu, f"merged_{len(pts)}_points"
    return None, f"ambiguous_{len(pts)}_points"
