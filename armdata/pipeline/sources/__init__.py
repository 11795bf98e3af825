"""Reading robot data: one module per input format (``rlds.py``), then ``standardize.py`` (canonical 7-D action,
primary camera, clean instruction) and ``inspect.py`` (the feature tree of unknown data, draft and validate source
files). A new robot format goes here as a module that yields ``schemas.records.Episode``.

May import ``schemas``, ``annotators`` (numeric helpers) and ``synthetic`` (the built-in sample's location).
"""
