"""The shipped recipes (`pipelines/*.yaml`) as a list: file, method, paper, label use and one line each, read from
each file's `about:` section, and its GPU-scale variant in `pipelines/gpu/` (`selfimprove recipes`)."""

from __future__ import annotations

from pathlib import Path

from ..prompts import shipped_dirs


def recipes_dir() -> Path:
    """`pipelines/` of a source checkout, else the copy bundled in the installed package."""
    candidates = shipped_dirs("pipelines")
    return next((folder for folder in candidates if folder.is_dir()), candidates[0])


def list_recipes(folder: Path | None = None) -> list[dict]:
    """One dict per recipe file, sorted by file name; a file that does not validate is listed with its error."""
    from ..config import load_pipeline
    from ..errors import ConfigError

    out = []
    folder = folder or recipes_dir()
    for path in sorted(folder.glob("*.yaml")):
        try:
            cfg = load_pipeline(path)
        except ConfigError as e:
            out.append({"file": path.name, "error": str(e).splitlines()[-1].strip()})
            continue
        a = cfg.about
        out.append({"file": path.name, "name": cfg.name, "method": a.method if a else "", "paper": (a.paper if a else None) or "",
                    "labels": a.labels if a else "", "summary": a.summary if a else "", "train": cfg.train.method,
                    "iterations": cfg.iterations, "model": cfg.model,
                    "gpu": f"gpu/{path.name}" if (folder / "gpu" / path.name).is_file() else None})
    return out
