"""Locators: where is the end effector in a frame? ``LOCATORS.create(name, **kwargs)``; names: fit, hint, pointer,
projection, detector. Each returns ``LocateResult`` per frame (pixel point or not found, confidence, method)."""

from armdata.annotators.locate import detector, fit, hint, pointer, projection  # noqa: F401  (registers them)
from armdata.annotators.locate.base import LOCATORS, LocateResult, Locator

__all__ = ["LOCATORS", "LocateResult", "Locator"]
