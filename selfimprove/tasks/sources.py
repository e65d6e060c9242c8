"""Load raw rows of a split: local JSONL / JSON / Parquet / CSV files, dataset folders, or hub datasets."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from ..config import ConfigError, SplitConfig


def _read_local(path: Path, split: str) -> list[dict]:
    name = path.name.lower()
    if path.is_dir():
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
        return ds.to_list()
    if name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        rows = []
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{path}:{lineno}: not valid JSON: {e}") from None
        return rows
    if name.endswith(".json"):
        data = json.loads(path.read_text())
        return data if isinstance(data, list) else data[split]
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if name.endswith(".csv"):
        import csv

        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    raise ConfigError(f"{path}: unsupported file type (use .jsonl, .json, .parquet, .csv or a saved dataset folder)")


def load_split_rows(cfg: SplitConfig, where: str) -> list[dict]:
    """Rows of `cfg.source` (first `size` after an optional seeded shuffle); `where` names the YAML path for errors."""
    if not cfg.source:
        raise ConfigError(f"{where}.source: this task reads a dataset; give a file path or a hub dataset id")
    path = Path(cfg.source).expanduser()
    if path.exists():
        rows = _read_local(path, cfg.split)
    elif cfg.source.startswith((".", "/", "~")) or path.suffix in (".jsonl", ".json", ".parquet", ".csv", ".gz"):
        raise ConfigError(f"{where}.source: file {cfg.source} does not exist")
    else:
        try:
            import datasets

            rows = datasets.load_dataset(cfg.source, cfg.subset, split=cfg.split).to_list()
        except Exception as e:  # noqa: BLE001 - hub errors vary; the advice is the same
            raise ConfigError(f"{where}.source: could not load hub dataset {cfg.source!r} split {cfg.split!r}: {e}") from None
    rows = [dict(r, _row_index=i) for i, r in enumerate(rows)]
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(rows)
    if cfg.size is not None:
        rows = rows[: cfg.size]
    if not rows:
        raise ConfigError(f"{where}.source: {cfg.source} has no rows")
    return rows


def field_value(row: dict, column: str, where: str, index: int):
    """`row[column]`; `a+b` joins several columns with a space (e.g. `Body+Question`)."""
    parts = column.split("+")
    missing = [p for p in parts if p not in row]
    if missing:
        cols = sorted(k for k in row if not k.startswith("_"))
        raise ConfigError(f"{where}: column {missing[0]!r} not found in row {index} (columns: {cols})")
    if len(parts) == 1:
        return row[parts[0]]
    return " ".join(str(row[p]).strip() for p in parts)
