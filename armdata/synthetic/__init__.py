"""The built-in synthetic sample: a small rendered pick-and-place world written as RLDS with ground truth (depth,
calibration, the gripper's pixel per step) so every stream can be measured (``world.py``).

May import ``schemas`` and ``armdata.cache``; nothing from ``pipeline`` or ``beam_jobs``.
"""
