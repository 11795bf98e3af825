"""The annotation stages over one episode at a time: depth maps, depth codes, the end-effector trace, sample
assembly (``annotate.py``, ``trace.py``, ``depth_handler.py``) and the typed config that sets them
(``config.py``). A stage has ``setup()`` (load models once per worker) and ``process(work)``; the Beam job wraps it.

May import ``annotators``, ``schemas`` and ``pipeline.output``'s writers; never ``beam_jobs``.
"""
