"""The audit report in headless Chromium: not blank, every image loads (checked through the page), and the
numbers on the page equal audit.json.

The page marks on <body> how many of its images loaded (``data-images-total`` / ``data-images-broken``, set by
its own script on the load event from ``img.complete && img.naturalWidth > 0``); ``--dump-dom`` returns the
DOM after that script ran. Every number the page shows from audit.json carries ``data-audit="dotted.path"``.
Needs Debian's ``chromium`` (``.ci/install-chromium``); skipped where it is not installed.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import output_factory as of
from armdata.pipeline.audit.report import format_number, run_audit, write_episode_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/install-chromium)")


def chromium(page: Path, profile: Path, *extra: str) -> str:
    """Run headless Chromium on a file with a fresh profile; returns stdout."""
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


class _DomReader(HTMLParser):
    """Collects <body> attributes, every <img> src, and the text of each data-audit element."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.imgs: list[str] = []
        self.marked: list[tuple[str, str]] = []
        self._open: list[list] = []  # [path, tag, nested same-tag depth, text parts]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = {k: v or "" for k, v in a.items()}
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        for entry in self._open:
            if entry[1] == tag:
                entry[2] += 1
        if "data-audit" in a:
            self._open.append([a["data-audit"], tag, 0, []])

    def handle_data(self, data):
        for entry in self._open:
            entry[3].append(data)

    def handle_endtag(self, tag):
        if self._open and self._open[-1][1] == tag:
            if self._open[-1][2] == 0:
                path, _, _, parts = self._open.pop()
                self.marked.append((path, "".join(parts).strip()))
                return
        for entry in self._open:
            if entry[1] == tag and entry[2] > 0:
                entry[2] -= 1


def lookup(d, dotted: str):
    cur = d
    for part in dotted.split("."):
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


def read_dom(page: Path, profile: Path) -> _DomReader:
    dom = chromium(page, profile, "--dump-dom")
    r = _DomReader()
    r.feed(dom)
    return r


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    out = of.write_output(root / "out", root / "models")
    page = run_audit(out.out_dir, samples=6, seed=0)
    return out, page, json.loads((page.parent / "audit.json").read_text())


def test_screenshot_is_not_blank(report, tmp_path):
    _, page, _ = report
    shot = tmp_path / "shot.png"
    chromium(
        page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1400", "--hide-scrollbars"
    )
    img = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB"))
    assert img.shape[:2] == (1400, 1200)
    assert img.std() > 20  # a blank (white) page has std 0
    assert (img.min(axis=2) < 200).mean() > 0.02  # ink on the page, not a stray line
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100  # a plot's colours, not just black text


def test_every_image_loads_and_numbers_equal_audit_json(report, tmp_path):
    _, page, audit = report
    dom = read_dom(page, tmp_path / "profile")
    assert dom.body.get("data-images-checked") == "yes", "the page's image check did not run"
    assert int(dom.body["data-images-total"]) == len(dom.imgs) > 20
    assert dom.body["data-images-broken"] == "0"
    assert all(src and "://" not in src for src in dom.imgs)
    paths = {p for p, _ in dom.marked}
    assert {
        "summary.samples",
        "summary.episodes",
        "summary.sources",
        "summary.dead_letters",
        "trace_error.per_frame.mean",
        "trace_error.per_trace_point.mean",
    } <= paths
    for p in audit["summary"]["templates"]:
        assert f"summary.templates.{p}" in paths
    for p in audit["summary"]["flags_by_kind"]:
        assert f"summary.flags_by_kind.{p}" in paths
    for path, text in dom.marked:
        assert text == format_number(lookup(audit, path)), path
    assert dict(dom.marked)["summary.samples"] == "30"


def test_a_missing_image_is_reported_broken(report, tmp_path):
    _, page, audit = report
    copy = tmp_path / "audit"
    shutil.copytree(page.parent, copy)
    (copy / audit["cards"][0]["images"]["image"]).unlink()
    dom = read_dom(copy / page.name, tmp_path / "profile")
    assert dom.body["data-images-broken"] == "1"


def test_episode_page_renders_with_every_image(report, tmp_path):
    out, _, _ = report
    page = write_episode_report(out.out_dir, "srcB__ep000")
    dom = read_dom(page, tmp_path / "profile")
    assert dom.body.get("data-images-checked") == "yes"
    assert int(dom.body["data-images-total"]) >= 4 and dom.body["data-images-broken"] == "0"
