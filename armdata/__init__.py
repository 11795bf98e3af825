"""armdata: MolmoAct-style action-reasoning data (depth tokens, end-effector traces, action tokens) at any scale.

The house, one room per concern; imports point one way, ``beam_jobs -> pipeline -> annotators -> schemas``
(``synthetic`` and ``training`` sit beside the layers; ``docs/architecture.md`` has the drawing):

- ``schemas/``: the data contracts (records, source-file schema, sample layout, templates, errors, registry).
- ``annotators/``: models and pure numeric cores, no Beam: ``depth/`` (estimators, VQ-VAE tokenizer),
  ``actions/`` (normalisation, action tokens), ``locate/`` (where is the gripper), ``track/`` (point trackers),
  ``trace.py`` (trace builder), ``draw.py``, ``molmoact_parse.py``.
- ``pipeline/``: steps over whole episodes: ``sources/`` (read a format, standardize, inspect),
  ``stages/`` (depth, depth codes, trace, sample assembly, the annotate config), ``statistics/`` (per-source
  action statistics), ``output/`` (shards, index reader, checks, card), ``audit/`` (the HTML report).
- ``beam_jobs/``: thin Beam jobs and the CLI wiring of each command.
- ``synthetic/``: the built-in rendered sample world; ``training/``: training the depth tokenizer.

The data flow, with the file for each step:
an RLDS episode (``pipeline/sources/rlds.py``: ``EpisodeDecoder`` -> ``schemas.records.Episode``) ->
a standard episode (``pipeline/sources/standardize.py`` -> ``StandardEpisode``: canonical 7-D action, primary
camera, clean instruction) -> stages (``pipeline/stages/annotate.py``: ``DepthStage``, ``DepthCodeStage``,
``TraceStageRunner`` using ``pipeline/stages/trace.py``) -> samples (``SampleStage``: one per step, annotation
json from ``schemas/sample.py``, text from ``schemas/templates.py``) -> shards (``pipeline/output/shards.py``,
assembled by ``beam_jobs/annotate.py``), then ``pipeline/output/check.py`` and ``pipeline/audit/report.py`` read
them back.
"""

__version__ = "0.1.0"
