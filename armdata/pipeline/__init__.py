"""Steps over whole episodes, as plain Python objects that Beam jobs wrap (no CLI, no runner choice here).

Rooms: ``sources/`` (reading each input format into ``Episode``, standardizing, inspecting unknown data),
``stages/`` (the annotation stages and their config), ``statistics/`` (action statistics), ``output/`` (writing and
reading shards, checks, the card), ``audit/`` (the HTML report). ``fs.py`` is the shared file access through
Beam's FileSystems (local, gs://, s3://).

May import ``annotators``, ``schemas``, ``synthetic`` and ``armdata.cache``; never ``beam_jobs`` (a test reads the
imports to hold this).
"""
