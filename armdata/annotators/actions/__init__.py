"""Actions: per-dimension normalisation by q01/q99 and 256 bins (``normalize.py``), and the mapping of bins to the
last 256 symbols of the Qwen2 vocabulary (``tokenizer.py``). May import ``schemas`` only."""
