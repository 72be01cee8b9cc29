"""The agent's local store (SQLite in the state directory): what it must keep running offline.

Every Pod the agent was told to run and its last known status (container states, restart
counts). After a restart with the API server unreachable the agent runs its Pods from here;
when the API returns, the API's list wins (Pods deleted meanwhile are stopped). A status in
which a container runs or ended is written at once, before the API is told: a run-to-completion
container that succeeded is never run again, and a container that ran is counted as restarted,
even after a SIGKILL. Statuses with only waiting containers are written behind, coalesced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
log = logging.getLogger(__name__)
# Deleted Pods remembered against a cache's replays: far more than one node sees between reconnects.
GONE_KEPT = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS pods (
    uid TEXT PRIMARY KEY,
    pod TEXT NOT NULL,          -- the Pod object as last received (JSON)
    source TEXT NOT NULL        -- 'api' or 'file'
);
CREATE TABLE IF NOT EXISTS statuses (
    uid TEXT PRIMARY KEY,
    status TEXT NOT NULL        -- the Pod status the agent last reported (JSON)
);
CREATE TABLE IF NOT EXISTS gone (
    uid TEXT PRIMARY KEY        -- a Pod the API deleted: a cache's stale copy of it is not run again
);
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,         -- ConfigMap or Secret a Pod referenced
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    object TEXT NOT NULL,       -- as last read from the API (JSON)
    PRIMARY KEY (kind, namespace, name)
);
"""


class PodStore:
    """A small synchronous SQLite store; each call is one short transaction (WAL, no fsync wait).

    A store that cannot be read (a torn write after a power loss, a disk error, not SQLite at all)
    is moved aside and replaced by an empty one, and a row that cannot be decoded is skipped and
    dropped: the API server's list then brings back what the node should run. Each such loss is
    logged and kept in `problems` until the agent has reported it (a Warning Event on the Node).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.problems: list[str] = []
        try:
            self._db = _open(path)
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    path.with_name(path.name + suffix).replace(aside.with_name(aside.name + suffix))
            self._report(f"the agent's store {path} cannot be read ({exc}): moved it to {aside.name} and "
                         "started with an empty one; Pods are listed again from the API server")
            self._db = _open(path)

    def take_problems(self) -> list[str]:
        """What was lost since the last call (for the agent to report)."""
        problems, self.problems = self.problems, []
        return problems

    def _report(self, message: str) -> None:
        log.error("%s", message)
        self.problems.append(message)

    def _decoded(self, text: str, what: str, drop: tuple[str, tuple[str, ...]]) -> Obj | None:
        """`text` as a JSON object, or None after reporting it and deleting its row (`drop`)."""
        try:
            value = json.loads(text)
        except ValueError as exc:
            problem = f"not JSON ({exc})"
        else:
            if isinstance(value, dict):
                return value
            problem = "not a JSON object"
        self._report(f"the agent's store has a bad row ({what}: {problem}): skipped and dropped")
        self._db.execute(*drop)
        return None

    def close(self) -> None:
        self._db.close()

    def put_pod(self, pod: Obj, source: str = "api") -> None:
        uid = pod["metadata"]["uid"]
        self._db.execute("INSERT INTO pods (uid, pod, source) VALUES (?, ?, ?) "
                         "ON CONFLICT(uid) DO UPDATE SET pod = excluded.pod, source = excluded.source",
                         (uid, json.dumps(pod, separators=(",", ":")), source))

    def delete_pod(self, uid: str) -> None:
        self._db.execute("DELETE FROM pods WHERE uid = ?", (uid,))
        self._db.execute("DELETE FROM statuses WHERE uid = ?", (uid,))

    def mark_gone(self, uid: str) -> None:
        """Remember that the Pod `uid` was deleted; only the newest `GONE_KEPT` are kept."""
        self._db.execute("INSERT OR REPLACE INTO gone (uid) VALUES (?)", (uid,))
        self._db.execute("DELETE FROM gone WHERE rowid <= (SELECT MAX(rowid) FROM gone) - ?", (GONE_KEPT,))

    def is_gone(self, uid: str) -> bool:
        return self._db.execute("SELECT 1 FROM gone WHERE uid = ?", (uid,)).fetchone() is not None

    def pods(self, source: str = "api") -> list[Obj]:
        rows = self._db.execute("SELECT uid, pod FROM pods WHERE source = ?", (source,)).fetchall()
        pods = []
        for uid, text in rows:
            pod = self._decoded(text, f"pod {uid}", ("DELETE FROM pods WHERE uid = ?", (uid,)))
            if pod is not None and (pod.get("metadata") or {}).get("uid") != uid:
                self._report(f"the agent's store has a bad row (pod {uid}: not a Pod with that uid): "
                             "skipped and dropped")
                self._db.execute("DELETE FROM pods WHERE uid = ?", (uid,))
            elif pod is not None:
                pods.append(pod)
        return pods

    def put_object(self, kind: str, namespace: str, name: str, obj: Obj | None) -> None:
        """Remember the last answer for a ConfigMap/Secret; None (it does not exist) forgets it."""
        if obj is None:
            self._db.execute("DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                             (kind, namespace, name))
            return
        self._db.execute("INSERT INTO objects (kind, namespace, name, object) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT(kind, namespace, name) DO UPDATE SET object = excluded.object",
                         (kind, namespace, name, json.dumps(obj, separators=(",", ":"))))

    def object_keys(self) -> set[tuple[str, str, str]]:
        """(kind, namespace, name) of every stored ConfigMap and Secret."""
        return {(kind, namespace, name) for kind, namespace, name in
                self._db.execute("SELECT kind, namespace, name FROM objects").fetchall()}

    def object(self, kind: str, namespace: str, name: str) -> Obj | None:
        row = self._db.execute("SELECT object FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                               (kind, namespace, name)).fetchone()
        if row is None:
            return None
        return self._decoded(row[0], f"{kind} {namespace}/{name}", (
            "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?", (kind, namespace, name)))

    def put_statuses(self, statuses: dict[str, Obj]) -> None:
        if not statuses:
            return
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO statuses (uid, status) VALUES (?, ?) "
                             "ON CONFLICT(uid) DO UPDATE SET status = excluded.status",
                             [(uid, json.dumps(s, separators=(",", ":"))) for uid, s in statuses.items()])
        self._db.execute("COMMIT")

    def status(self, uid: str) -> Obj | None:
        row = self._db.execute("SELECT status FROM statuses WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            return None
        return self._decoded(row[0], f"status of pod {uid}", ("DELETE FROM statuses WHERE uid = ?", (uid,)))


def _open(path: Path) -> sqlite3.Connection:
    """Open (or create) the store and check that SQLite can read every page of it."""
    # It holds Secrets the node's Pods use (as the kubelet's edge store does): owner only.
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # WAL + synchronous=NORMAL: a crash of the agent never loses a committed write; only a
        # power loss may lose the last few, which the API (or a rerun) then corrects.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        for table, columns in (("pods", "uid, pod, source"), ("statuses", "uid, status"),
                               ("objects", "kind, namespace, name, object")):
            db.execute(f"SELECT {columns} FROM {table} LIMIT 0")  # another program's tables: unreadable
        verdict = db.execute("PRAGMA quick_check").fetchone()
        if not verdict or verdict[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {verdict[0] if verdict else 'no answer'}")
    except BaseException:
        db.close()
        raise
    return db


class StoringReporter:
    """Wraps a reporter: every status also goes to the store, terminal ones at once."""

    def __init__(self, inner: Any, store: PodStore, interval: float = 0.25) -> None:
        self.inner = inner
        self._store = store
        self._interval = interval
        self._pending: dict[str, Obj] = {}

    def update(self, ref: Any, status: Obj) -> None:
        self._pending[ref.uid] = status
        if _settled(status):
            self.flush()
        self.inner.update(ref, status)

    def event(self, ref: Any, type_: str, reason: str, message: str, container: str | None) -> None:
        self.inner.event(ref, type_, reason, message, container)

    async def finished(self, ref: Any, deleting: bool) -> None:
        self.flush()
        await self.inner.finished(ref, deleting)

    def gone(self, ref: Any) -> None:
        self.inner.gone(ref)

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        self._store.put_statuses(pending)

    async def run(self) -> None:
        """Write the pending statuses behind, every `interval` seconds, until cancelled."""
        try:
            while True:
                await asyncio.sleep(self._interval)
                self.flush()
        finally:
            self.flush()


def _settled(status: Obj) -> bool:
    """A status worth writing at once, before the API can see it: the Pod ended, or a container
    runs or ended. A restarted agent must know that a container ran (its restart is counted) and
    that it ended (it may not run again); only the waiting states are written behind."""
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    containers = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    return any({"running", "terminated"} & (c.get("state") or {}).keys() for c in containers)
