"""Locators: where is the end effector in a frame? ``LOCATORS.create(name, **kwargs)``; names: hint, pointer,
projection. Each returns ``LocateResult`` per frame (pixel point or not found, confidence, method)."""

from armdata.annotators.locate import hint, pointer, projection  # noqa: F401  (registers them)
from armdata.annotators.locate.base import LOCATORS, LocateResult, Locator

__all__ = ["LOCATORS", "LocateResult", "Locator"]
