"""One run at a time per output folder.

Two runs into one ``--out`` would each take the other's shards for stale ones and delete them, and both could exit
0 over an empty or half output. A run therefore holds ``OUT/.armdata.lock`` (JSON: pid, host, start time, command)
from start to end. A second run is refused with the first one's pid, host and start time. A lock left by a run that
was killed (kill -9, a lost machine) is recognised as stale and taken over: on the same host, when its pid is no
longer alive; from another host, when it is older than ``stale_after_s`` (the lock is refreshed by nothing, so a
long run on another host must be given a generous bound, or the lock removed by hand).

Local folders take the lock with ``O_CREAT | O_EXCL`` (atomic); object stores (``gs://``, ``s3://``) by writing it
and reading it back (best effort: object stores have no exclusive create through Beam's FileSystems).
The lock is re-entrant within one process (``build`` holds it across its statistics and annotate steps).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass

from armdata.pipeline import fs
from armdata.schemas.errors import ArmdataError

logger = logging.getLogger(__name__)

LOCK_FILE = ".armdata.lock"
DEFAULT_STALE_AFTER_S = 7 * 24 * 3600.0


class OutputInUse(ArmdataError):
    """Another run is writing into the same output folder."""


@dataclass(frozen=True)
class LockInfo:
    pid: int
    host: str
    started: float
    token: str
    argv: list[str]

    @classmethod
    def mine(cls) -> "LockInfo":
        return cls(os.getpid(), socket.gethostname(), time.time(), uuid.uuid4().hex, list(sys.argv))

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"pid {self.pid} on host {self.host}, started {when}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _is_stale(info: LockInfo, stale_after_s: float) -> bool:
    if info.host == socket.gethostname():
        return not _pid_alive(info.pid)
    return time.time() - info.started > stale_after_s


class OutputLock:
    """Context manager holding ``OUT/.armdata.lock``; re-entrant within a process."""

    _held: dict[str, list] = {}  # lock path -> [LockInfo, depth]

    def __init__(self, out_dir: str, stale_after_s: float = DEFAULT_STALE_AFTER_S):
        self.out_dir = fs.absolute(out_dir)
        self.path = fs.join(self.out_dir, LOCK_FILE)
        self.stale_after_s = stale_after_s

    def __enter__(self) -> "OutputLock":
        held = self._held.get(self.path)
        if held:
            held[1] += 1
            return self
        fs.makedirs(self.out_dir)
        info = LockInfo.mine()
        for _ in range(3):
            if self._try_create(info):
                self._held[self.path] = [info, 1]
                return self
            other = self._read()
            if other is None:  # vanished between our attempt and the read: try again
                continue
            if not _is_stale(other, self.stale_after_s):
                raise OutputInUse(
                    f"{self.out_dir} is in use by another armdata run ({other.describe()}); wait for it to end, "
                    f"or use another --out (if that run is dead on another machine, delete {self.path})"
                )
            logger.warning("taking over the stale lock of a run that ended without releasing it (%s)",
                           other.describe())
            fs.delete([self.path])
        raise OutputInUse(f"could not take the lock {self.path}: other runs keep taking it")

    def __exit__(self, *exc) -> None:
        held = self._held.get(self.path)
        if not held:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del self._held[self.path]
        current = self._read()
        if current is not None and current.token == held[0].token:
            fs.delete([self.path])

    def _try_create(self, info: LockInfo) -> bool:
        body = json.dumps(info.__dict__).encode()
        if fs.is_remote(self.path):
            if fs.exists(self.path):
                return False
            fs.write_bytes(self.path, body)
            got = self._read()
            return got is not None and got.token == info.token
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        return True

    def _read(self) -> LockInfo | None:
        if not fs.exists(self.path):
            return None
        try:
            d = json.loads(fs.read_bytes(self.path))
            return LockInfo(int(d["pid"]), str(d["host"]), float(d["started"]), str(d["token"]), list(d["argv"]))
        except Exception:  # an unreadable lock (cut short by a crash while writing it): treat as stale
            if not fs.exists(self.path):
                return None
            return LockInfo(-1, socket.gethostname(), 0.0, "", [])
