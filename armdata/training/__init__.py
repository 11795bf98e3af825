"""Training models on data a job sampled: the depth VQ-VAE tokenizer (``depth_tokenizer.py``).

May import ``annotators``, ``pipeline`` and ``schemas``; never ``beam_jobs``.
"""
