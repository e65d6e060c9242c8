"""Run directory: atomic writes, Parquet tables, stage manifests, shard-level resume.

Layout: `<run_dir>/<name>/iter_<k>/<stage>/` holds `table.parquet` (or `shards/`), `manifest.json`
and `log.txt`. A stage whose manifest matches its config hash and input fingerprints is skipped;
a generation stage keeps finished shards across a kill and resumes after the last one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"
PROGRESS = "progress.json"
TABLE = "table.parquet"


def stable_hash(obj: Any) -> str:
    """sha256 of a canonical JSON rendering: the same config always hashes the same."""
    data = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(path: Path) -> str:
    """Digest of every file under `path` (names and bytes), for model and adapter folders."""
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        h.update(file_digest(p).encode())
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_table(path: Path, rows: list[dict]) -> None:
    """Write rows as a Parquet table (a `datasets`-loadable file), atomically. Rows may differ in their keys (a
    refinement's extra columns): every key of any row is a column, null where a row lacks it."""
    import datasets

    keys = list(dict.fromkeys(k for r in rows for k in r))
    if any(len(r) != len(keys) for r in rows):
        rows = [{k: r.get(k) for k in keys} for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if rows:
            datasets.Dataset.from_list(rows).to_parquet(tmp)
        else:
            pq.write_table(pa.table({}), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def load_dataset_table(path: Path):
    """A stage table as a Hugging Face `datasets.Dataset` (for users and notebooks)."""
    import datasets

    return datasets.Dataset(pa.concat_tables([pq.read_table(p) for p in _table_files(Path(path))]))


def _table_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / TABLE).exists():
        return [path / TABLE]
    return sorted((path / "shards").glob("shard_*.parquet"))


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("selfimprove", "torch", "transformers", "trl", "peft", "datasets", "math-verify", "vllm"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class StageDir:
    """One stage's folder: decides skip/resume and records what was done."""

    path: Path
    stage: str
    config: dict
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        return stable_hash({"stage": self.stage, "config": self.config})

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def table_path(self) -> Path:
        return self.path / TABLE

    @property
    def shard_dir(self) -> Path:
        return self.path / "shards"

    def manifest(self) -> dict | None:
        try:
            return read_json(self.manifest_path)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def is_complete(self) -> bool:
        """True when a finished manifest matches this config and these inputs."""
        m = self.manifest()
        return bool(
            m
            and m.get("status") == "complete"
            and m.get("config_hash") == self.config_hash
            and m.get("inputs") == self.inputs
        )

    @property
    def fingerprint(self) -> str:
        m = self.manifest()
        if not m or m.get("status") != "complete":
            raise RuntimeError(f"stage {self.path} has not finished")
        return m["output_fingerprint"]

    def begin(self) -> None:
        """Prepare to (re)run: keep finished shards only if they were made with this config and inputs."""
        key = {"config_hash": self.config_hash, "inputs": self.inputs}
        progress = self.path / PROGRESS
        try:
            same = read_json(progress) == key
        except (FileNotFoundError, json.JSONDecodeError):
            same = False
        if not same and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.manifest_path.unlink(missing_ok=True)
        atomic_write_json(progress, key)

    # -- shards -----------------------------------------------------------------------
    def shard_path(self, index: int) -> Path:
        return self.shard_dir / f"shard_{index:05d}.parquet"

    def has_shard(self, index: int) -> bool:
        return self.shard_path(index).exists()

    def write_shard(self, index: int, rows: list[dict]) -> None:
        write_table(self.shard_path(index), rows)

    def read_shards(self) -> list[dict]:
        rows: list[dict] = []
        for p in sorted(self.shard_dir.glob("shard_*.parquet")):
            rows.extend(read_table(p))
        return rows

    # -- completion ---------------------------------------------------------------------
    def finish(self, *, output_fingerprint: str, counts: dict, seconds: float, extra: dict | None = None) -> dict:
        manifest = {
            "stage": self.stage,
            "status": "complete",
            "config": self.config,
            "config_hash": self.config_hash,
            "inputs": self.inputs,
            "output_fingerprint": output_fingerprint,
            "counts": counts,
            "seconds": round(seconds, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": library_versions(),
            **(extra or {}),
        }
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    def finish_table(self, rows: list[dict], *, counts: dict, seconds: float, extra: dict | None = None) -> dict:
        write_table(self.table_path, rows)
        return self.finish(output_fingerprint=file_digest(self.table_path), counts=counts, seconds=seconds, extra=extra)

    def rows(self) -> list[dict]:
        return read_table(self.table_path)

    @contextmanager
    def logging_to_file(self) -> Iterator[None]:
        """Send the `selfimprove` logger (and library warnings) to this stage's log.txt."""
        self.path.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.path / "log.txt")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        loggers = [logging.getLogger(n) for n in ("selfimprove", "transformers", "trl", "peft")]
        for lg in loggers:
            lg.addHandler(handler)
        logging.getLogger("selfimprove").setLevel(logging.INFO)
        try:
            yield
        finally:
            for lg in loggers:
                lg.removeHandler(handler)
            handler.close()


class RunStore:
    """The run directory `<run_dir>/<name>/`: the source of truth of a pipeline run."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def stage(self, iteration: int | None, stage: str, config: dict, inputs: dict[str, str] | None = None) -> StageDir:
        base = self.root / "data" if iteration is None else self.root / f"iter_{iteration}"
        return StageDir(base / stage, stage, config, dict(inputs or {}))

    def model_dir(self, iteration: int) -> Path:
        return self.root / f"iter_{iteration}" / "train" / "model"

    def iterations(self) -> list[int]:
        out = []
        for p in self.root.glob("iter_*"):
            try:
                out.append(int(p.name.split("_", 1)[1]))
            except ValueError:
                continue
        return sorted(out)
