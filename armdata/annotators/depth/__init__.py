"""Depth: estimators that give a relative depth map per frame (``estimator.py``: Depth Anything V2 through
transformers, the source's depth camera), the AiT-layout VQ-VAE that turns a 320x320 map into 100 codes
(``tokenizer.py``, its committed key manifest ``tokenizer_manifest.json``), and tiny random models for tests
(``random_init.py``). May import ``schemas`` only."""
