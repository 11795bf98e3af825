"""Models and pure numeric cores, one room per family: ``depth/`` (depth estimators, the VQ-VAE depth
tokenizer), ``actions/`` (normalisation and action tokens), ``locate/`` (where is the end effector),
``track/`` (point trackers); ``trace.py`` (the 5-point trace), ``draw.py`` (drawing it as MolmoAct's loader does),
``molmoact_parse.py`` (MolmoAct's answer parsers). A new model goes into its family's room behind that family's
registry or factory.

May import ``schemas`` only: no Beam, no ``pipeline`` (a test reads the imports to hold this).
"""
