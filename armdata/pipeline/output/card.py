"""The output's run record (``run.json``) and dataset card (``README.md``)."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from typing import Any

from armdata import __version__
from armdata.pipeline import fs
from armdata.schemas.sample import CARD_FILE, RUN_FILE, SHARDS_DIR
from armdata.schemas.source import SourceConfig
from armdata.schemas.templates import TEMPLATE_VERSION, TEMPLATES


def write_run_record(out_dir: str, *, sources: list[SourceConfig], config: dict, config_hash: str,
                     counts: dict, models: dict, argv: list[str] | None = None) -> dict:
    """``run.json``: everything needed to say how the output was made (read by the audit and by people)."""
    import apache_beam
    import torch
    import transformers

    record = {
        "armdata_version": __version__,
        "command_line": " ".join(shlex.quote(a) for a in (argv if argv is not None else ["armdata", *sys.argv[1:]])),
        "config": config,
        "config_hash": config_hash,
        "sources": [
            {"name": s.name, "file": s.origin, "data_dir": s.data_dir(), "split": s.data.split,
             "fingerprint": s.fingerprint()}
            for s in sources
        ],
        "counts": counts,
        "models": models,
        "templates": {"version": TEMPLATE_VERSION, "names": TEMPLATES.names()},
        "versions": {"python": platform.python_version(), "apache_beam": apache_beam.__version__,
                     "torch": torch.__version__, "transformers": transformers.__version__},
    }
    _atomic_json(fs.join(out_dir, RUN_FILE), record)
    return record


def _atomic_json(path: str, obj: Any) -> None:
    fs.write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def _licences(models: dict) -> list[str]:
    out = []
    for name, prov in (models.get("depth", {}).get("backends") or {}).items():
        if name == "depth-camera":
            out.append(f"- depth: the source's own depth camera ({prov.get('camera') or 'cameras.depth'}); "
                       "the data's licence applies")
            continue
        out.append(f"- depth ({name}): {prov.get('model_id') or prov.get('model') or prov.get('camera') or ''} "
                   f"revision {prov.get('revision') or 'n/a'}, licence {prov.get('licence') or prov.get('license') or 'n/a'}")
    tok = models.get("depth_tokenizer", {})
    out.append(f"- depth tokenizer: {tok.get('path')} (sha256 {str(tok.get('sha256'))[:16]}..., input "
               f"{tok.get('input_scaling') or 'signed'})")
    if tok.get("demo"):
        out.append("- **the depth tokenizer is armdata's demo tokenizer** (trained on the built-in sample, shipped "
                   "for the demo and tests only): these depth codes mean nothing to a released MolmoAct model")
    for locator, tr in (models.get("trace", {}).get("locators") or {}).items():
        cfg, trk = tr.get("config", {}), tr.get("tracker", {})
        out.append(f"- trace: mode {cfg.get('mode')}, locator {locator}, tracker {cfg.get('tracker')}"
                   + (f" (licence {trk['license']})" if trk.get("license") else ""))
    at = models.get("action_tokenizer", {})
    out.append(f"- action tokenizer: {at.get('name_or_path')} (vocab_size {at.get('vocab_size')}, "
               f"revision {at.get('revision') or 'n/a'})")
    return out


def _camera_fit(models: dict) -> list[str]:
    """The card's lines on fitted cameras (locator ``fit``): per source, how well the fit explains its points."""
    fit = (models.get("trace") or {}).get("fit")
    if not fit:
        return []
    lines = ["## Camera fit", "",
             "The gripper was found by projecting the end-effector state through a camera fitted to located points "
             "(`cameras.json` holds every fit). Steps carry the flags " + ", ".join(f"`{f}`" for f in fit["flags"])
             + " where the fit is poor, missing, disagrees with a located point, or extrapolates.", ""]
    for name, e in fit["per_source"].items():
        rms = e.get("residual_rms_px_median")
        lines.append(f"- `{name}` ({e['fit']}): {e['fits_ok']} of {e['fits']} fits usable; {e['points']} located "
                     f"points from {e['episodes_with_points']} episodes, {e['points_disagreeing']} disagree with the "
                     f"fit (flagged); inlier RMS {'n/a' if rms is None else f'{rms:.2f} px'}"
                     + (f"; problems: {'; '.join(e['problems'])}" if e["problems"] else ""))
        cam = e.get("camera")
        if cam and cam.get("ok"):
            k = cam["intrinsics"]
            lines.append(f"  - K: fx {k[0][0]:.1f}, fy {k[1][1]:.1f}, cx {k[0][2]:.1f}, cy {k[1][2]:.1f}; camera "
                         f"centre {[round(c, 3) for c in cam['camera_centre']]} (end-effector frame)")
    for path, t in (fit.get("tables") or {}).items():
        lines.append(f"- points table `{path}`: {t['rows']} rows, {t['dropped']} dropped (sha256 {t['sha256'][:16]}...)")
    return [*lines, ""]


# Where MolmoAct's released code, its paper and AURORA's tokenizer training disagree; the molmoact preset follows
# the released code (allenai/molmoact preprocess/processors.py, olmo/data/custom_lerobot_dataset.py).
MOLMOACT_NOTES = (
    "VQ-VAE input: MolmoAct's preprocessing feeds `ToTensor()` of the PIL-resized 320x320 map, i.e. [0, 1] with no "
    "Normalize; AURORA trained the tokenizer on `Normalize(0.5, 0.5)` input in [-1, 1]. The preset feeds [0, 1].",
    "Depth map: the original Depth-Anything-V2 `infer_image(bgr, 518)` (cv2 cubic resize to a short side >= 518, "
    "multiple of 14; bilinear align_corners back), min-max with +1e-8 truncated to uint8, PIL bilinear to 320x320.",
    "Actions: float32 with eps 1e-8 on q99 - q01, zero-range dims by `np.isclose`; the gripper is written as "
    "`1 - a` (not normalized), so it reads 1 = closed where the source says 1 = open; the paper describes q01/q99 "
    "normalization into 256 bins and does not mention the inversion.",
    "Action chunks: the fine-tuning answers carry `chunked_action`, the next 8 steps padded with the last; the "
    "multi-view prompt and answer are the fine-tuning loader's (its answer names the trace twice, as the 'left' "
    "and the 'right' end effector's).",
    "Trace: the released preprocessing writes the pointer's pixel coordinates (and `[current point]` or `[]` where "
    "no point was found); the paper and MolmoAct's evaluation code (`scale_pt`) read traces as [0, 255]: armdata "
    "writes [0, 255] and gives a step without a trusted point no trace.",
)


def _preset_lines(config: dict) -> list[str]:
    preset = config.get("preset", "armdata")
    if preset != "molmoact":
        return [f"Preset `{preset}`: armdata's own conventions (transformers image processor, OpenCV resize, "
                "[-1, 1] tokenizer input, float64 actions, the source's gripper value)."]
    return ["Preset `molmoact`: MolmoAct's released preprocessing, reproduced exactly. Where the released code "
            "differs from the paper or from AURORA's tokenizer training, the code is followed:", "",
            *[f"- {n}" for n in MOLMOACT_NOTES]]


def write_card(out_dir: str, record: dict) -> str:
    """``README.md`` in the output: sources, counts, models (revision, licence), config and its hash, version,
    command line, and how to read the shards."""
    c = record["counts"]
    lines = [
        "# armdata dataset",
        "",
        "MolmoAct-style action-reasoning samples (depth tokens, end-effector trace, action tokens) in WebDataset "
        "shards, made by armdata.",
        "",
        "## Sources",
        *[f"- `{s['name']}`: {s['data_dir']} (split `{s['split']}`, source file {s['file']})" for s in record["sources"]],
        "",
        "## Counts",
        f"- samples: {c.get('samples')}",
        f"- episodes: {c.get('episodes_total')} in the sources; {c.get('episodes_annotated')} annotated in the last "
        f"run, {c.get('episodes_skipped')} resumed from earlier runs, {c.get('episodes_failed')} failed "
        f"(see `failures.jsonl`)",
        f"- shards: {c.get('shards')} under `{SHARDS_DIR}/` (a manifest with count, bytes and sha256 beside each)",
        "",
        "## Models",
        *_licences(record["models"]),
        "",
        *_camera_fit(record["models"]),
        "## Preprocessing",
        *_preset_lines(record["config"]),
        "",
        "## Templates",
        f"Version `{record['templates']['version']}`: {', '.join(record['templates']['names'])}. Every sample's "
        "`json` member holds the structured annotation and the text of every template that applies to it.",
        "",
        "## Reproduce",
        f"- armdata {record['armdata_version']}, config hash `{record['config_hash']}`",
        f"- command: `{record['command_line']}`",
        "- config:",
        "",
        "```json",
        json.dumps(record["config"], indent=2, sort_keys=True),
        "```",
        "",
        "## Read",
        "",
        "```python",
        "import webdataset as wds",
        f"ds = wds.WebDataset(sorted(glob.glob('{SHARDS_DIR}/*.tar')), shardshuffle=False).decode('rgb')",
        "```",
        "",
        "`index.parquet` has one row per sample; `dataset_statistics.json` the action statistics (OpenVLA/MolmoAct "
        "layout); `audit/index.html` the audit report.",
        "",
    ]
    path = fs.join(out_dir, CARD_FILE)
    fs.write_bytes(path, "\n".join(lines).encode())
    return path
