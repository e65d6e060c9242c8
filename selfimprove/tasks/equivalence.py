"""Answer equivalence through math-verify, in a process pool with a per-item timeout.

math-verify times out with `signal.alarm`, which only works in a process's main thread, so
each check runs in a worker process's main thread; a check that still hangs is abandoned
after `timeout` seconds and the pool is rebuilt. Plain numbers compare without the pool.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
from fractions import Fraction

log = logging.getLogger("selfimprove.equivalence")


def _as_number(s: str) -> Fraction | None:
    s = s.strip().replace(",", "").rstrip(".")
    if s.endswith("%"):
        s = s[:-1]
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _verify_worker(gold: str, pred: str, timeout: int) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]

    def _parse(s: str):
        # inputs are already-extracted answers: read the whole string as one LaTeX expression
        # (`1+x^2`, `(1, 2)`), falling back to math-verify's own extraction
        body = s if s.count("$") >= 2 else f"${s.replace('$', '')}$"
        return parse(body, extraction_config=configs, parsing_timeout=timeout) or parse(
            s, extraction_config=configs, parsing_timeout=timeout
        )

    g, p = _parse(gold), _parse(pred)
    if not g or not p:
        return gold.strip() == pred.strip()
    return bool(verify(g, p, timeout_seconds=timeout))


class Equivalence:
    """`same(pairs)` -> list of (equal: bool, error: str|None); cached, pooled, time-limited."""

    def __init__(self, workers: int | None = None, timeout: float = 5.0):
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.timeout = timeout
        self._pool: cf.ProcessPoolExecutor | None = None
        self._cache: dict[tuple[str, str], tuple[bool, str | None]] = {}

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        return self._pool

    def _reset_pool(self) -> None:
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def same(self, pairs: list[tuple[str | None, str | None]]) -> list[tuple[bool, str | None]]:
        results: list[tuple[bool, str | None] | None] = [None] * len(pairs)
        todo: dict[tuple[str, str], list[int]] = {}
        for i, (gold, pred) in enumerate(pairs):
            if gold is None or pred is None or not str(pred).strip():
                results[i] = (False, None)
                continue
            gold, pred = str(gold).strip(), str(pred).strip()
            if gold == pred:
                results[i] = (True, None)
                continue
            a, b = _as_number(gold), _as_number(pred)
            if a is not None and b is not None:
                results[i] = (a == b, None)
                continue
            key = (gold, pred)
            if key in self._cache:
                results[i] = self._cache[key]
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            for key, value in self._run(list(todo)).items():
                self._cache[key] = value
                for i in todo[key]:
                    results[i] = value
        return results  # type: ignore[return-value]

    def _run(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[bool, str | None]]:
        out: dict[tuple[str, str], tuple[bool, str | None]] = {}
        pool = self._get_pool()
        futures = {pool.submit(_verify_worker, g, p, max(1, int(self.timeout))): (g, p) for g, p in keys}
        broken = False
        try:
            for fut in cf.as_completed(futures, timeout=self.timeout * (1 + len(keys) / self.workers) + 30):
                key = futures[fut]
                try:
                    out[key] = (fut.result(), None)
                except Exception as e:  # noqa: BLE001 - a bad answer must not crash the run
                    out[key] = (False, f"math-verify error: {type(e).__name__}: {e}")
                    broken = broken or isinstance(e, cf.process.BrokenProcessPool)
        except cf.TimeoutError:
            broken = True
        for key in keys:
            out.setdefault(key, (False, "math-verify timeout"))
        if broken:
            self._reset_pool()
        return out

    def equal(self, gold: str | None, pred: str | None) -> bool:
        return self.same([(gold, pred)])[0][0]


_shared: Equivalence | None = None


def shared_equivalence() -> Equivalence:
    """One pool per process, closed at exit."""
    global _shared
    if _shared is None:
        _shared = Equivalence()
        atexit.register(_shared.close)
    return _shared
