"""The exporter room's shared parts: samples read back in shard order, and an export folder that appears whole
or not at all."""

from __future__ import annotations

import output_factory as of
import pytest

from armdata.pipeline.output.export import iter_samples
from armdata.pipeline.output.export.base import staged_folder
from armdata.schemas.errors import ArmdataError


def test_iter_samples_yields_every_sample_in_shard_order_with_its_annotation(tmp_path):
    out = of.write_output(tmp_path / "out", tmp_path / "m", steps=4)
    got = [(key, ann.key, sorted(members)) for key, members, ann in iter_samples(out.out_dir)]
    assert [k for k, _, _ in got] == out.keys
    assert all(k == ann_key and "json" in members for k, ann_key, members in got)


def test_iter_samples_on_a_folder_without_shards_names_it(tmp_path):
    with pytest.raises(ArmdataError, match="no shards"):
        list(iter_samples(tmp_path))


def test_staged_folder_replaces_the_target_only_when_the_block_finishes(tmp_path):
    to = tmp_path / "export"
    to.mkdir()
    (to / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(to, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("export failed half way")
    assert sorted(p.name for p in to.iterdir()) == ["old.txt"]  # the old export is intact
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary folder left behind
    with staged_folder(to, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in to.iterdir()) == ["new.txt"]
    with pytest.raises(ArmdataError, match="--overwrite"):
        with staged_folder(to, overwrite=False):
            pass
