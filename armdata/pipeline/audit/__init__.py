"""The audit report: quality figures over finished shards, pictures, one page per episode (``report.py``), its plots
(``plots.py``), trace error against ground truth (``trace_eval.py``) and the HTML templates (``templates/``).

May import ``pipeline.output`` (to read shards and run the checks), ``annotators`` and ``schemas``.
"""
