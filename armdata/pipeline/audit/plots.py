"""Pictures for the audit report: matplotlib (Agg) plots and Pillow images, each returned as PNG bytes.

Pure functions of arrays; no file system, no Beam. The audit module decides names and writes them atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

ACTION_DIMS = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
EST_COLOR = (255, 64, 64)  # estimated gripper points (what the trace was built from)
GT_COLOR = (64, 255, 64)  # ground truth (the built-in sample carries it)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _fig_png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def decode_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def colorize_depth(depth_u8: np.ndarray) -> np.ndarray:
    """uint8 [H, W] relative inverse depth -> RGB (magma: near is bright)."""
    import matplotlib

    cmap = matplotlib.colormaps["magma"]
    return (cmap(np.asarray(depth_u8, dtype=np.float64) / 255.0)[..., :3] * 255).astype(np.uint8)


def code_grid_image(codes: Sequence[int], size: int = 320, codebook: int = 128) -> np.ndarray:
    """The 10x10 code grid itself as a picture (used when the depth tokenizer cannot be loaded)."""
    g = int(round(len(codes) ** 0.5))
    grid = (np.asarray(codes, dtype=np.float64).reshape(g, g) * (255.0 / max(codebook - 1, 1))).astype(
        np.uint8
    )
    img = Image.fromarray(grid).resize((size, size), Image.NEAREST)
    return colorize_depth(np.asarray(img))


def upscale(rgb: np.ndarray, target_width: int = 320) -> tuple[np.ndarray, float]:
    """Nearest-neighbour enlargement to about ``target_width`` (small robot frames are hard to see)."""
    h, w = rgb.shape[:2]
    s = max(1, target_width // max(w, 1))
    if s == 1:
        return rgb, 1.0
    return np.asarray(Image.fromarray(rgb).resize((w * s, h * s), Image.NEAREST)), float(s)


def mark_points(
    rgb: np.ndarray,
    scale: float,
    est: Sequence[Sequence[float] | None],
    gt: Sequence[Sequence[float] | None],
    current: int | None = None,
    track: bool = False,
) -> np.ndarray:
    """Draw gripper points (pixel coordinates of the original frame) on an upscaled image.

    est: estimated points (red circles), gt: ground truth (green crosses); ``track`` joins consecutive points;
    ``current`` fills that index's estimated point.
    """
    img = Image.fromarray(np.ascontiguousarray(rgb))
    d = ImageDraw.Draw(img)
    r = max(2.0, scale * 1.5)

    def xy(p):
        return (float(p[0]) + 0.5) * scale - 0.5, (float(p[1]) + 0.5) * scale - 0.5

    for pts, color in ((gt, GT_COLOR), (est, EST_COLOR)):
        if track:
            run = [xy(p) for p in pts if p is not None]
            if len(run) > 1:
                d.line(run, fill=color, width=1)
    for i, p in enumerate(gt):
        if p is not None:
            x, y = xy(p)
            d.line([(x - r, y - r), (x + r, y + r)], fill=GT_COLOR, width=1)
            d.line([(x - r, y + r), (x + r, y - r)], fill=GT_COLOR, width=1)
    for i, p in enumerate(est):
        if p is not None:
            x, y = xy(p)
            box = [x - r, y - r, x + r, y + r]
            d.ellipse(box, outline=EST_COLOR, fill=EST_COLOR if i == current else None, width=1)
    return np.asarray(img)


def hstack(
    images: Sequence[np.ndarray], labels: Sequence[str] | None = None, height: int = 160, gap: int = 4
) -> np.ndarray:
    """Images side by side at one height, with a label strip under each (a filmstrip)."""
    tiles = []
    for im in images:
        h, w = im.shape[:2]
        nw = max(1, int(round(w * height / h)))
        tiles.append(Image.fromarray(np.ascontiguousarray(im)).resize((nw, height), Image.NEAREST))
    label_h = 14 if labels else 0
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    canvas = Image.new("RGB", (max(width, 1), height + label_h), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    x = 0
    for i, t in enumerate(tiles):
        canvas.paste(t, (x, 0))
        if labels:
            d.text((x + 2, height + 1), labels[i], fill=(0, 0, 0))
        x += t.width + gap
    return np.asarray(canvas)


def action_bins_chart(bins: Sequence[int]) -> bytes:
    """A small bar chart of one step's 7 action bins (np.digitize output, 1..256)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.2, 1.7))
    ax.bar(range(len(bins)), bins, color="#3b7dd8")
    ax.set_ylim(0, 257)
    ax.axhline(128.5, color="#999", lw=0.6)
    ax.set_xticks(range(len(bins)), [d[:3] for d in ACTION_DIMS[: len(bins)]], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel("bin", fontsize=7)
    fig.subplots_adjust(left=0.14, right=0.98, top=0.88, bottom=0.22)
    return _fig_png(fig)


def action_histograms(
    norm_counts: np.ndarray,
    norm_edges: np.ndarray,
    raw: np.ndarray,
    clipped_share: Sequence[float],
    q01: Sequence[float] | None,
    q99: Sequence[float] | None,
) -> bytes:
    """Per dimension: normalized values (top, exact counts, with the share clipped) and raw values (bottom, a
    sample of them) with the q01/q99 lines."""
    plt = _pyplot()
    d = norm_counts.shape[0]
    fig, axes = plt.subplots(2, d, figsize=(1.9 * d, 3.6), squeeze=False)
    for i in range(d):
        name = ACTION_DIMS[i] if i < len(ACTION_DIMS) else str(i)
        top, bot = axes[0, i], axes[1, i]
        # stairs draw one patch per histogram (hist draws one per bar: ~10x slower to render)
        top.stairs(norm_counts[i], norm_edges, fill=True, color="#3b7dd8")
        if raw.size:
            bot.stairs(*np.histogram(raw[:, i], 40), fill=True, color="#888")
        top.set_title(f"{name}  clip {100 * clipped_share[i]:.1f}%", fontsize=8)
        if q01 is not None and q99 is not None:
            bot.axvline(q01[i], color="#d33", lw=1)
            bot.axvline(q99[i], color="#d33", lw=1)
        for ax in (top, bot):
            ax.tick_params(labelsize=6)
    axes[0, 0].set_ylabel("normalized", fontsize=8)
    axes[1, 0].set_ylabel("raw (q01/q99)", fontsize=8)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.92, bottom=0.08, wspace=0.35, hspace=0.35)
    return _fig_png(fig)


def counts_bar(
    counts: Sequence[int],
    xlabel: str,
    title: str,
    color: str = "#3b7dd8",
    labels: Sequence[str] | None = None,
) -> bytes:
    plt = _pyplot()
    n = len(counts)
    fig, ax = plt.subplots(figsize=(max(3.0, min(9.0, 0.07 * n + 2.5)), 2.2))
    if n > 20:
        ax.stairs(counts, np.arange(n + 1) - 0.5, fill=True, color=color)
    else:
        ax.bar(range(n), counts, color=color, width=0.9)
    if labels is not None:
        ax.set_xticks(range(n), labels, fontsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.14, right=0.98, top=0.88, bottom=0.22)
    return _fig_png(fig)


def error_histogram(series: dict[str, Sequence[float]], title: str) -> bytes:
    """Histograms of trace errors in [0, 255] units, one per named series."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 2.4))
    vals = [np.asarray(v, dtype=np.float64) for v in series.values() if len(v)]
    top = max([float(np.percentile(v, 99)) for v in vals] + [1.0])
    bins = np.linspace(0, top * 1.05, 40)
    for name, v in series.items():
        if len(v):
            ax.stairs(
                np.histogram(np.clip(v, 0, bins[-1]), bins)[0],
                bins,
                fill=True,
                alpha=0.6,
                label=f"{name} (n={len(v)})",
            )
    ax.set_xlabel("error, [0,255] units", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    if vals:
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.14, right=0.98, top=0.88, bottom=0.22)
    return _fig_png(fig)


def action_timeline(normalized: np.ndarray, decoded: np.ndarray, no_trace: Sequence[bool]) -> bytes:
    """Normalized actions per dimension over the episode (line) and what the stored ids decode to (steps);
    steps without a trace shaded."""
    plt = _pyplot()
    t = np.arange(normalized.shape[0])
    d = normalized.shape[1]
    fig, axes = plt.subplots(d, 1, figsize=(7.5, 0.9 * d + 0.6), sharex=True, squeeze=False)
    for i in range(d):
        ax = axes[i, 0]
        ax.plot(t, normalized[:, i], color="#3b7dd8", lw=1.2, label="normalized")
        ax.step(t, decoded[:, i], where="mid", color="#d33", lw=0.8, label="decoded from ids")
        for s in np.flatnonzero(np.asarray(no_trace, dtype=bool)):
            ax.axvspan(s - 0.5, s + 0.5, color="#ddd", lw=0)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(ACTION_DIMS[i] if i < len(ACTION_DIMS) else str(i), fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6, loc="upper right")
    axes[-1, 0].set_xlabel("step (grey: no trace)", fontsize=8)
    fig.subplots_adjust(left=0.09, right=0.99, top=0.98, bottom=0.08, hspace=0.15)
    return _fig_png(fig)


def error_timeline(errors: Sequence[float | None]) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 1.8))
    t = [i for i, e in enumerate(errors) if e is not None]
    ax.plot(t, [errors[i] for i in t], "o-", ms=3, color="#d33")
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("gripper error", fontsize=8)
    ax.set_title("estimated vs ground-truth gripper point, [0,255] units", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.14, right=0.98, top=0.88, bottom=0.22)
    return _fig_png(fig)
