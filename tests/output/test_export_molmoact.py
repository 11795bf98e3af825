"""`armdata export molmoact`: the fine-tuning dataset MolmoAct's CustomLeRobotDataset loads (save_to_disk) and the
mixture its RobotHfDataset loads (parquet), from finished shards.

The expected formats are MolmoAct's (allenai/molmoact ``olmo/data/custom_lerobot_dataset.py``: ``load_from_disk``,
``json.loads(processed_action)["chunked_action"]``, ``ast.literal_eval(trace)``, images through PIL;
``olmo/data/robot_datasets.py``: ``conversations["value"][0|1]``, ``ast.literal_eval(annotation)``;
``preprocess/action_reasoning_data.py``: ``json.dumps`` of normalized_action / tokenized_action / chunked_action,
``str(line)`` traces); they are re-derived here from the samples, not from the exporter's code.
"""

from __future__ import annotations

import ast
import io
import json
import re

import output_factory as of
import pytest
from PIL import Image

from armdata.annotators.actions.tokenizer import ActionTokenizer
from armdata.cli import main
from armdata.pipeline.output.export import EXPORTERS, iter_samples

FINETUNE_COLUMNS = {"language_instruction", "depth", "trace", "processed_action", "image", "wrist_image",
                    "key", "source_episode_id"}


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    return of.write_output(root / "out", root / "models", steps=12)


def _by_key(out_dir):
    return {k: (m, a) for k, m, a in iter_samples(out_dir)}


def test_finetune_export_loads_with_load_from_disk_in_molmoacts_formats(output, tmp_path):
    import datasets

    to = tmp_path / "ft"
    assert main(["export", "molmoact", str(output.out_dir), "--to", str(to), "--layout", "finetune"]) == 0
    ds = datasets.load_from_disk(str(to))
    assert set(ds.column_names) == FINETUNE_COLUMNS
    samples = _by_key(output.out_dir)
    with_trace = [k for k, (_, a) in samples.items() if a.trace_uv255 is not None]
    assert sorted(ds["key"]) == sorted(with_trace) and len(ds) > 0
    tok = ActionTokenizer.from_pretrained(output.run["models"]["action_tokenizer"]["name_or_path"], check=False)
    for row in ds:
        members, a = samples[row["key"]]
        assert row["language_instruction"] == a.instruction
        assert row["source_episode_id"] == a.source_episode_id
        assert re.fullmatch(r"<DEPTH_START>(<DEPTH_\d+>){100}<DEPTH_END>", row["depth"])
        assert [int(x) for x in re.findall(r"<DEPTH_(\d+)>", row["depth"])] == a.depth_codes
        assert ast.literal_eval(row["trace"]) == a.trace_uv255  # what the loader does with it
        assert row["trace"] == str(a.trace_uv255)  # MolmoAct writes str(line)
        # the chunk: this step and the next 7 of the episode, padded with the last (ActionProcessor.chunk_actions)
        steps = [samples[k][1] for k in sorted(samples) if samples[k][1].episode == a.episode
                 and samples[k][1].source == a.source]
        window = [s.action.ids for s in steps[a.step : a.step + 8]]
        window += [window[-1]] * (8 - len(window))
        chunk = "[" + ", ".join("[" + ", ".join(tok.ids_to_symbols(ids)) + "]" for ids in window) + "]"
        expected = json.dumps({"normalized_action": a.action.normalized,
                               "tokenized_action": "[" + ", ".join(a.action.symbols) + "]",
                               "chunked_action": chunk})
        assert row["processed_action"] == expected
        assert json.loads(row["processed_action"])["chunked_action"] == chunk
        assert row["image"].size == (a.image_size[1], a.image_size[0])
        if "wrist" in a.views:
            assert row["wrist_image"].tobytes() == Image.open(io.BytesIO(members["wrist.jpg"])).convert("RGB").tobytes()
        else:
            assert row["wrist_image"] is None


def test_mixture_export_loads_with_load_dataset_parquet(output, tmp_path):
    import datasets

    res = EXPORTERS.create("molmoact").export(output.out_dir, tmp_path / "mix", "mixture")
    files = sorted(str(p) for p in (tmp_path / "mix" / "data").glob("*.parquet"))
    assert len(files) == 2 and res.episodes == 3
    ds = datasets.load_dataset("parquet", data_files={"train": files}, split="train")
    assert len(ds) == res.rows
    samples = _by_key(output.out_dir)
    seen = set()
    for row in ds:
        _, a = samples[row["key"]]
        conv = row["conversations"]
        assert conv["value"][0] == a.text[row["template"]]["prompt"]  # what RobotHfDataset.get reads
        assert conv["value"][1] == a.text[row["template"]]["answer"]
        if row["template"] == "trajectory_conditioned":
            assert ast.literal_eval(row["annotation"]) == a.trace_uv255
        else:
            assert row["annotation"] is None
        assert row["image"].size == (a.image_size[1], a.image_size[0])
        assert (row["wrist"] is not None) == ("wrist" in a.views)
        seen.add((row["key"], row["template"]))
    want = {(k, t) for k, (_, a) in samples.items() if a.trace_uv255 is not None and a.depth_codes is not None
            for t in a.text}
    assert seen == want


def test_unknown_layout_is_refused(output, tmp_path):
    from armdata.schemas.errors import ArmdataError

    with pytest.raises(ArmdataError, match="finetune, mixture"):
        EXPORTERS.create("molmoact").export(output.out_dir, tmp_path / "x", "lerobot")
