"""Per-source action statistics (mean, std, min, max, q01, q99, mask) in the ``dataset_statistics.json`` layout
OpenVLA and MolmoAct read: exact accumulators, mergeable sketches, the file layout (``actions.py``).

May import ``annotators`` and ``schemas``.
"""
