"""Tiny trace data built on the fly: videos of a textured 'gripper' patch moving over a textured background,
episodes and source files around them, and a tiny randomly initialised Molmo2 saved to disk.

Everything is seeded. Nothing here downloads anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from armdata.schemas.records import StandardEpisode
from armdata.schemas.source import SourceConfig


def smooth_path(steps: int, height: int, width: int, seed: int = 0, margin: float = 0.2) -> np.ndarray:
    """float [T, 2] pixel (u, v): a smooth random curve inside the image, ~1-4 px per step."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, steps)
    u0, v0 = rng.uniform(margin, 1 - margin, 2)
    au, av = rng.uniform(0.1, 0.25, 2)
    fu, fv = rng.uniform(0.5, 1.5, 2)
    ph = rng.uniform(0, 2 * np.pi, 2)
    u = (u0 + au * np.sin(2 * np.pi * fu * t + ph[0])) * (width - 1)
    v = (v0 + av * np.sin(2 * np.pi * fv * t + ph[1])) * (height - 1)
    return np.stack([np.clip(u, 0, width - 1), np.clip(v, 0, height - 1)], axis=1)


def moving_patch_video(
    path_uv: np.ndarray, height: int, width: int, patch: int = 28, seed: int = 0
) -> np.ndarray:
    """uint8 [T, H, W, 3]: a static smooth background and a high-contrast textured square centred on path_uv."""
    rng = np.random.default_rng(seed)
    # Background: smooth low-contrast blotches (a table); the patch: a checker of random colours (a gripper with
    # markings), the kind of texture a point tracker locks onto.
    bg = cv2.resize(rng.uniform(90, 160, (height // 24 + 2, width // 24 + 2, 3)).astype(np.float32), (width, height),
                    interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    cell = max(2, patch // 5)
    n = patch // cell + 1
    tex = np.kron(rng.integers(0, 256, (n, n, 3)), np.ones((cell, cell, 1)))[:patch, :patch].astype(np.uint8)
    frames = np.empty((len(path_uv), height, width, 3), np.uint8)
    for i, (u, v) in enumerate(path_uv):
        f = bg.copy()
        # Sub-pixel placement: warp the texture so its centre lands exactly on (u, v).
        m = np.float32([[1, 0, u - (patch - 1) / 2], [0, 1, v - (patch - 1) / 2]])
        warped = cv2.warpAffine(tex, m, (width, height), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(np.full((patch, patch), 255, np.uint8), m, (width, height), flags=cv2.INTER_LINEAR)
        a = (mask.astype(np.float32) / 255.0)[..., None]
        frames[i] = (warped * a + f * (1 - a)).round().astype(np.uint8)
    return frames


def make_episode(
    frames: np.ndarray, eef_position: np.ndarray | None = None, metadata: dict | None = None, key: str = "ep0"
) -> StandardEpisode:
    t = frames.shape[0]
    return StandardEpisode(
        source="synthetic",
        episode_key=key,
        actions=np.zeros((t, 7), np.float32),
        primary=frames,
        instruction="pick up the block",
        eef_position=None if eef_position is None else np.asarray(eef_position, np.float32),
        metadata=dict(metadata or {}),
    )


def make_source(
    calibration: dict | None = None, hint: dict | None = None, unconfirmed: list[str] | None = None
) -> SourceConfig:
    body: dict[str, Any] = {
        "name": "synthetic",
        "data": {"dir": "builtin:sample"},
        "cameras": {"primary": "observation/image"},
        "instruction": {"path": "language_instruction"},
        "action": {"arm": [{"path": "action", "index": [0, 1, 2, 3, 4, 5]}], "gripper": {"path": "action", "index": 6}},
        "unconfirmed": unconfirmed or [],
    }
    if calibration is not None:
        body["calibration"] = calibration
    if hint is not None:
        body["locator_hint"] = hint
    return SourceConfig.model_validate(body)


def look_at_calibration(height: int, width: int, f: float = 300.0, distance: float = 1.0) -> dict:
    """A camera 'distance' metres in front of the base origin looking back along -x of the base frame.

    Camera x right = base -y, camera y down = base -z, camera z forward = base -x; base origin at depth 'distance'.
    """
    r = np.array([[0, -1, 0], [0, 0, -1], [-1, 0, 0]], dtype=float)
    tmat = np.eye(4)
    tmat[:3, :3] = r
    tmat[:3, 3] = [0, 0, distance]
    return {
        "intrinsics": {"fx": f, "fy": f, "cx": (width - 1) / 2, "cy": (height - 1) / 2, "width": width, "height": height},
        "camera_from_base": tmat.tolist(),
    }


# -- tiny Molmo2 -----------------------------------------------------------------------------------------------

_MOLMO2_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<im_start>", "<im_end>", "<im_patch>", "<im_col>",
    "<low_res_im_start>", "<|image|>", "<im_low>", "<frame_start>", "<frame_end>", "<|video|>",
]
_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|image|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer():
    """A character-level fast tokenizer with Molmo2's special tokens (built here, never downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789 <>=\"/.,;:_-[]\n")
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image|>", "video_token": "<|video|>"},
    )
    hf.add_special_tokens({"additional_special_tokens": _MOLMO2_SPECIALS})
    hf.chat_template = _CHAT_TEMPLATE
    return hf


def save_tiny_molmo2(out_dir: Path, seed: int = 0) -> Path:
    """A randomly initialised Molmo2 of the real architecture (~73k parameters) and its tokenizer, saved with
    save_pretrained into out_dir (loadable with AutoModelForImageTextToText.from_pretrained)."""
    import torch
    from transformers import Molmo2Config, Molmo2ForConditionalGeneration

    tok = build_tiny_tokenizer()
    ids = tok.convert_tokens_to_ids
    cfg = Molmo2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=2, head_dim=16, image_size=[28, 28], patch_size=14),
        adapter_config=dict(vision_feature_layer=[-1, -2], hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                            head_dim=16, intermediate_size=64, text_hidden_size=32),
        text_config=dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=64,
                         additional_vocab_size=16, num_hidden_layers=2, intermediate_size=64,
                         max_position_embeddings=512),
        image_start_token_id=ids("<im_start>"), low_res_image_start_token_id=ids("<low_res_im_start>"),
        image_end_token_id=ids("<im_end>"), image_patch_id=ids("<im_patch>"),
        frame_start_token_id=ids("<frame_start>"), frame_end_token_id=ids("<frame_end>"),
    )
    torch.manual_seed(seed)
    model = Molmo2ForConditionalGeneration(cfg).eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def _base_image_processor():
    from transformers.image_processing_utils import BaseImageProcessor

    return BaseImageProcessor


class StandInMolmo2ImageProcessor(_base_image_processor()):
    """Stand-in for Molmo2ImageProcessor, which needs torchvision (absent here: PyPI's torchvision wheels are
    built against CUDA torch). Keeps its output contract (pixel_values [crops, patches, 14*14*3],
    image_token_pooling, image_grids [N, 4], image_num_crops) with one low-res view plus one high-res crop."""

    model_input_names = ["pixel_values", "image_token_pooling", "image_grids", "image_num_crops"]

    def __init__(self, crop_size: int = 28, patch_size: int = 14, pooling: tuple[int, int] = (2, 2)):
        super().__init__()
        self.crop_size, self.patch_size, self.pooling = crop_size, patch_size, pooling

    def __call__(self, images, return_tensors=None, **kwargs):
        import torch
        from transformers.image_processing_utils import BatchFeature
        from transformers.models.molmo2.image_processing_molmo2 import arange_for_pooling

        flat = []
        for im in images if isinstance(images, (list, tuple)) else [images]:
            flat.extend(im if isinstance(im, (list, tuple)) else [im])
        cs, ps = self.crop_size, self.patch_size
        cp = cs // ps
        ppc = cp * cp
        px, pools, grids, off = [], [], [], 0
        for im in flat:
            r = cv2.resize(np.asarray(im), (cs, cs), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1
            patches = torch.from_numpy(r).reshape(cp, ps, cp, ps, 3).permute(0, 2, 1, 3, 4).reshape(ppc, ps * ps * 3)
            px.append(torch.stack([patches, patches]))
            grid = torch.arange(ppc, dtype=torch.int32).reshape(cp, cp)
            lo, rh, rw = arange_for_pooling(grid, *self.pooling)
            hi, gh, gw = arange_for_pooling(grid, *self.pooling)
            pool = torch.cat([lo, torch.where(hi >= 0, hi + ppc, -1)])
            pools.append(torch.where(pool >= 0, pool + off, -1))
            off += 2 * ppc
            grids.append(torch.tensor([rh, rw, gh, gw]))
        data = {"pixel_values": torch.cat(px), "image_token_pooling": torch.cat(pools),
                "image_grids": torch.stack(grids), "image_num_crops": torch.tensor([2] * len(flat))}
        return BatchFeature(data, tensor_type=return_tensors)


def standin_molmo2_processor_factory(model_dir: str):
    """Builds a Molmo2Processor (the real class: prompt expansion, tokenisation, batching) around the checkpoint's
    tokenizer and the stand-in image processor; only the class check that needs torchvision is relaxed."""
    from transformers import AutoTokenizer, Molmo2Processor

    class StandInMolmo2Processor(Molmo2Processor):
        def check_argument_for_proper_class(self, argument_name, argument):
            return type(argument)

    tok = AutoTokenizer.from_pretrained(model_dir)
    return StandInMolmo2Processor(
        image_processor=StandInMolmo2ImageProcessor(), video_processor=None, tokenizer=tok, chat_template=_CHAT_TEMPLATE
    )


# -- a differently drawn robot: arm, flat-coloured gripper, clutter, scale change, motion blur, JPEG --------------


def _arm_pose(wrist: np.ndarray, base: np.ndarray, l1: float, l2: float) -> np.ndarray:
    """The elbow of a two-link arm from ``base`` reaching ``wrist`` (elbow up), lengths l1, l2 in pixels."""
    d = wrist - base
    r = float(np.clip(np.linalg.norm(d), abs(l1 - l2) + 1e-3, l1 + l2 - 1e-3))
    a = np.arctan2(d[1], d[0])
    cos_b = (l1 * l1 + r * r - l2 * l2) / (2 * l1 * r)
    b = np.arccos(np.clip(cos_b, -1, 1))
    return base + l1 * np.array([np.cos(a - b), np.sin(a - b)])


def _clutter_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A dark green work mat with cluttered objects of many colours and a fine sensor-like grain."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    base = rng.uniform([30, 60, 40], [50, 90, 60])
    for c in range(3):
        img[..., c] = base[c] + 25 * (xx / width) - 15 * (yy / height)
    img = img.clip(0, 255).astype(np.uint8)
    for _ in range(28):
        col = tuple(int(x) for x in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        s = int(rng.integers(6, max(8, width // 9)))
        if rng.random() < 0.5:
            cv2.rectangle(img, (cx - s, cy - s // 2), (cx + s, cy + s // 2), col, -1)
            cv2.rectangle(img, (cx - s, cy - s // 2), (cx + s, cy + s // 2), (20, 20, 20), 1)
        else:
            cv2.circle(img, (cx, cy), s // 2 + 2, col, -1, lineType=cv2.LINE_AA)
    grain = rng.normal(0, 6, (height, width, 1))
    return (img.astype(np.float32) + grain).clip(0, 255).astype(np.uint8)


def _draw_robot(img: np.ndarray, wrist: np.ndarray, size: float, opening: float, base: np.ndarray,
                l1: float, l2: float, ss: int) -> None:
    """Draws arm and gripper on ``img`` (supersampled by ``ss``); the gripper's palm centre lies at ``wrist``.

    The gripper is a dark grey body with an orange band and two grey fingers, oriented along the forearm."""
    elbow = _arm_pose(wrist, base, l1, l2)
    fore = (wrist - elbow) / max(1e-6, float(np.linalg.norm(wrist - elbow)))
    side = np.array([-fore[1], fore[0]])

    def P(p):  # to supersampled integer pixels
        return tuple(int(round(c * ss)) for c in p)

    shift = 0
    thick = max(2, int(round(0.45 * size * ss)))
    cv2.line(img, P(base), P(elbow), (190, 195, 205), thick, cv2.LINE_AA, shift)
    cv2.line(img, P(elbow), P(wrist - 0.45 * size * fore), (170, 175, 190), max(2, int(thick * 0.8)), cv2.LINE_AA)
    cv2.circle(img, P(elbow), int(0.35 * size * ss), (90, 95, 110), -1, cv2.LINE_AA)

    def quad(centre, half_len, half_wid):
        c = np.asarray(centre)
        pts = [c + a * half_len * fore + b * half_wid * side for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        return np.array([P(p) for p in pts], np.int32)

    cv2.fillConvexPoly(img, quad(wrist, 0.3 * size, 0.5 * size), (55, 55, 60), cv2.LINE_AA)
    cv2.fillConvexPoly(img, quad(wrist - 0.12 * size * fore, 0.06 * size, 0.5 * size), (235, 120, 30), cv2.LINE_AA)
    for sgn in (-1, 1):
        fc = wrist + 0.55 * size * fore + sgn * (0.12 + 0.28 * opening) * size * side
        cv2.fillConvexPoly(img, quad(fc, 0.3 * size, 0.07 * size), (120, 120, 128), cv2.LINE_AA)


def drawn_robot_episode(
    steps: int = 50, height: int = 240, width: int = 320, seed: int = 0, size0: float = 30.0,
    scale_end: float = 1.7, blur_substeps: int = 6, jpeg_quality: int = 80, speed: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A robot unlike the built-in world: a two-link arm from the bottom edge, a flat dark gripper with an orange
    band and two fingers that open and close, on a cluttered green mat, at another image size.

    The gripper moves along a smooth path (``speed`` scales its amplitude) while its apparent size goes from
    ``size0`` to ``size0 * scale_end`` (it comes toward the camera); every frame is the average of
    ``blur_substeps`` renderings over the exposure (motion blur), then JPEG-compressed as robot datasets store it.

    Returns (frames uint8 [T, H, W, 3], gt_uv float [T, 2] the palm centre, gt_size float [T] in pixels).
    """
    rng = np.random.default_rng(seed)
    bg = _clutter_background(height, width, rng)
    path = smooth_path(steps + 1, height, width, seed=seed + 100, margin=0.3)
    centre = path.mean(0)
    path = centre + speed * (path - centre)
    sizes = size0 * np.geomspace(1.0, scale_end, steps + 1)
    opening = 0.5 + 0.5 * np.sin(np.linspace(0, 3 * np.pi, steps + 1) + rng.uniform(0, np.pi))
    base = np.array([width * rng.uniform(0.35, 0.65), height * 1.15])
    l1 = l2 = 0.62 * float(np.hypot(height, width))
    ss = 2
    big_bg = cv2.resize(bg, (width * ss, height * ss), interpolation=cv2.INTER_NEAREST)
    frames = np.empty((steps, height, width, 3), np.uint8)
    gt = np.zeros((steps, 2))
    gt_size = np.zeros(steps)
    for t in range(steps):
        acc = np.zeros((height, width, 3), np.float32)
        # Exposure from the previous pose to this one: motion blur proportional to speed.
        for k in range(blur_substeps):
            a = (k + 1) / blur_substeps if blur_substeps > 1 else 1.0
            w = (1 - a) * path[t] + a * path[t + 1]
            img = big_bg.copy()
            _draw_robot(img, w, (1 - a) * sizes[t] + a * sizes[t + 1],
                        (1 - a) * opening[t] + a * opening[t + 1], base, l1, l2, ss)
            acc += cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
            gt[t] += w / blur_substeps
            gt_size[t] += ((1 - a) * sizes[t] + a * sizes[t + 1]) / blur_substeps
        f = (acc / blur_substeps).round().clip(0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        frames[t] = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    # Ground truth: the palm centre averaged over each frame's exposure (where the blurred image shows it).
    return frames, gt, gt_size
