"""One strict registry for every kind of named thing (templates, locators, trackers).

A duplicate name raises; an unknown name raises with the names that exist (like LeRobot's ProcessorStepRegistry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> items. ``kind`` names the thing in messages; ``ordered`` keeps registration order in ``names()``
    (templates are listed in the order they are meant to be read), else names are sorted."""

    def __init__(self, kind: str, ordered: bool = False) -> None:
        self.kind = kind
        self.ordered = ordered
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def create(self, name: str, **kwargs: Any):
        """A new instance from a registered factory; kwargs go to its constructor."""
        factory: Callable[..., Any] = self.get(name)  # type: ignore[assignment]
        return factory(**kwargs)

    def names(self) -> list[str]:
        return list(self._items) if self.ordered else sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
