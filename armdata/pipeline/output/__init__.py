"""What a job leaves behind and how it is read back: shard tars (``shards.py``), the reader of shards, manifests
and index (``reader.py``), the checker (``check.py``), the dataset card and run record (``card.py``). Exporters to
other layouts go here too. A new check goes into ``check.py`` as a function named for what it checks.

May import ``annotators``, ``schemas`` and ``pipeline.fs``.
"""
