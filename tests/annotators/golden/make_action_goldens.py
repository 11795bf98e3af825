"""Action goldens: MolmoAct's ActionProcessor (preprocess/processors.py) on the real Bridge debug sample.

Not part of the test suite: run by hand in a throwaway venv (see make_goldens.py), TOKENIZER_DIR from armdata's
make_test_tokenizer, BRIDGE_DIR the Bridge debug sample's builder folder (1.0.0):

    REF_DIR=... python make_action_goldens.py OUT_DIR TOKENIZER_DIR BRIDGE_DIR
"""
import json, os, sys, types
import numpy as np
REF = os.environ["REF_DIR"]
sys.path[:0] = [f"{REF}/preprocess", f"{REF}/AiT/vae", f"{REF}/DA2"]
sys.modules["line_utils"] = types.SimpleNamespace(point_at_gripper=None)
import processors
import tensorflow_datasets as tfds

OUT, TOK, BRIDGE = sys.argv[1], sys.argv[2], sys.argv[3]
b = tfds.builder_from_directory(BRIDGE)
eps = []
for ep in tfds.as_numpy(b.as_dataset(split="train")):
    acts = [s["action"] for s in ep["steps"]]
    eps.append({"file_path": ep["episode_metadata"]["file_path"].decode(), "actions": acts})
ap = processors.ActionProcessor(tokenizer_model=TOK)
# MolmoAct's DatasetProcessor computes the statistics from every frame with an action
frames = [{"action": a.tolist(), "episode_index": i} for i, e in enumerate(eps) for a in e["actions"]]
stats = ap.compute_dataset_statistics(frames)
out = {"vocab_size": ap.base_tokenizer.vocab_size, "stats": stats, "episodes": []}
for i, e in enumerate(eps):
    toks = []
    rows = []
    for a in e["actions"]:
        p = ap.process_action(a.tolist())
        toks.append(p["tokenized_action"].strip("[]").split(", "))
        rows.append(p)
    chunks = ap.chunk_actions(toks)
    ids = [ap.base_tokenizer.convert_tokens_to_ids(t) for t in toks]
    chunk_ids = [[ap.base_tokenizer.convert_tokens_to_ids(s.strip("[]").split(", ")) for s in c[1:-1].split("], [")]
                 for c in chunks]
    processed = [json.dumps({"normalized_action": r["normalized_action"], "tokenized_action": r["tokenized_action"],
                             "chunked_action": c}) for r, c in zip(rows, chunks)]
    out["episodes"].append({"file_path": e["file_path"], "ids": ids, "chunk_ids": chunk_ids,
                            "processed_action": processed if i == 0 else None})
json.dump(out, open(f"{OUT}/bridge_actions.json", "w"))
print(len(eps), sum(len(e["actions"]) for e in eps), stats["action"]["q01"])
