"""One entry point per question a job asks of a source, whatever its format (``data.format``): is the source file
right for its data, which episodes are there, read them. RLDS goes to ``rlds.py``, LeRobot to ``lerobot.py``.

Jobs that parallelise reading (``beam_jobs/common.py``) ask ``source_format`` and build the format's own steps.
"""

from __future__ import annotations

from collections.abc import Iterator

from armdata.schemas.errors import RecordError
from armdata.schemas.records import Episode
from armdata.schemas.source import SourceConfig

RLDS = "rlds"
LEROBOT = "lerobot"


def source_format(source: SourceConfig) -> str:
    return source.data.format


def check_against_data(source: SourceConfig) -> None:
    """Open the source's data and check every field path the file names; raises SourceFileError /
    DataLocationError / LeRobotFormatError before anything is decoded."""
    if source_format(source) == LEROBOT:
        from armdata.pipeline.sources.lerobot import LeRobotEpisodeReader

        LeRobotEpisodeReader(source).check()
        return
    from armdata.pipeline.sources.rlds import EpisodeDecoder

    EpisodeDecoder(source).features


def episode_keys(source: SourceConfig) -> list[str]:
    """Every episode key of the source's split, from metadata alone (nothing is decoded)."""
    if source_format(source) == LEROBOT:
        from armdata.pipeline.sources.lerobot import LeRobotEpisodeReader

        return LeRobotEpisodeReader(source).episode_keys()
    from armdata.pipeline.sources import rlds

    return rlds.episode_keys(source)


def read_episodes_or_errors(source: SourceConfig, limit: int | None = None) -> Iterator[Episode | RecordError]:
    """Every episode in order (local, one process); bad episodes come as RecordError, in their place."""
    if source_format(source) == LEROBOT:
        from armdata.pipeline.sources import lerobot

        yield from lerobot.read_episodes_or_errors(source, limit)
        return
    from armdata.pipeline.sources import rlds

    yield from rlds.read_episodes_or_errors(source, limit)


def read_episodes(source: SourceConfig, limit: int | None = None) -> Iterator[Episode]:
    """As read_episodes_or_errors, raising the first RecordError."""
    for item in read_episodes_or_errors(source, limit):
        if isinstance(item, RecordError):
            raise item
        yield item


def data_digest(source: SourceConfig) -> str:
    """A hash that stands for the data without reading it (statistics cache keys)."""
    if source_format(source) == LEROBOT:
        from armdata.pipeline.sources.lerobot import data_digest as lerobot_digest

        return lerobot_digest(source)
    from armdata.pipeline.sources.rlds import resolve_data_dir
    from armdata.pipeline.statistics.actions import dataset_info_digest

    return dataset_info_digest(resolve_data_dir(source))
