"""A persistent cache of model requests (SQLite in the run or job folder).

Judges, P(True) and log-likelihood scorers ask the same question many times (the same response in two
runs, a rerun after a kill mid-shard). The key is a hash of the model fingerprint, backend, the
messages and the sampling parameters; the value is the JSON result. Writes are committed at once,
so a killed job keeps every answer it got.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable

from .store import stable_hash


class RequestCache:
    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._mem: dict[str, Any] = {}
        self._db = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Ray workers of one job share the file: wait for another writer's lock instead of failing
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=120)
            self._db.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT)")
            self._db.commit()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(*parts: Any) -> str:
        return stable_hash(list(parts))

    def get(self, key: str) -> Any | None:
        with self._lock:
            if key in self._mem:
                return self._mem[key]
            if self._db is None:
                return None
            row = self._db.execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_many(self, items: dict[str, Any]) -> None:
        with self._lock:
            self._mem.update(items)
            if self._db is not None and items:
                self._db.executemany("INSERT OR REPLACE INTO cache VALUES (?, ?)", [(k, json.dumps(v)) for k, v in items.items()])
                self._db.commit()

    def map(self, keys: list[str], compute: Callable[[list[int]], list[Any]]) -> list[Any]:
        """Values for `keys`: cached ones are reused, duplicates computed once, the rest by `compute(indices)`."""
        out: list[Any] = [None] * len(keys)
        todo: dict[str, int] = {}
        for i, k in enumerate(keys):
            v = self.get(k)
            if v is not None:
                out[i] = v
                self.hits += 1
            elif k not in todo:
                todo[k] = i
        if todo:
            self.misses += len(todo)
            values = compute(list(todo.values()))
            self.put_many(dict(zip(todo.keys(), values)))
        for i, k in enumerate(keys):
            if out[i] is None:
                out[i] = self.get(k)
        return out

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
