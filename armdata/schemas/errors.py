"""Errors that name the record they come from.

A bad record is data, not a crash: every error raised on input carries the source, episode, step and field it
concerns, so that a job can route it to a dead-letter output and a person can find the record.
"""

from __future__ import annotations

from dataclasses import dataclass


class ArmdataError(Exception):
    """Base class of armdata's own errors (bad configuration, bad input, bad checkpoints)."""


class SourceFileError(ArmdataError):
    """A source file is malformed or does not match its data: names the file, the setting and what exists."""

    def __init__(self, path: str, setting: str, message: str, known: list[str] | None = None):
        self.path = str(path)
        self.setting = setting
        self.known = list(known or [])
        text = f"{self.path}: {setting}: {message}"
        if self.known:
            text += f" (keys that exist: {', '.join(self.known)})"
        super().__init__(text)


@dataclass
class RecordError(ArmdataError):
    """One bad record: which source, episode, step and field, what kind of failure, and a message.

    `step` is None when the failure concerns the whole episode (0 steps, unreadable record). `fatal` marks a
    record the source file says must stop the job (a ``fail`` policy in its ``checks``).
    """

    source: str
    episode: str | None
    step: int | None
    field: str
    kind: str
    message: str
    fatal: bool = False

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"source={self.source} episode={self.episode}"
        if self.step is not None:
            where += f" step={self.step}"
        return f"{self.kind}: {self.message} [{where} field={self.field}]"

    def to_dict(self) -> dict:
        """The dead-letter record (JSON-serialisable)."""
        d = {
            "source": self.source,
            "episode": self.episode,
            "step": self.step,
            "field": self.field,
            "kind": self.kind,
            "message": self.message,
        }
        if self.fatal:
            d["fatal"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecordError":
        return cls(d["source"], d.get("episode"), d.get("step"), d["field"], d["kind"], d["message"],
                   bool(d.get("fatal", False)))


class MissingExtraError(ArmdataError):
    """A model family's optional packages are not installed: names the extra that installs them."""

    def __init__(self, extra: str, what: str, missing: list[str], note: str = ""):
        self.extra = extra
        self.missing = list(missing)
        text = (f"{what} needs the optional extra [{extra}] (missing: {', '.join(missing)}): "
                f"pip install 'armdata[{extra}]'")
        super().__init__(text + (f". {note}" if note else ""))
