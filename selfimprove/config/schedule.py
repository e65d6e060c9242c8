"""Per-iteration schedules: config values that change from one iteration to the next (ScPO raises tau, Meta-Rewarding
trains its judge in early iterations only). Two spellings, mixable:

    schedule:
      2: {select.builder.options.tau: 0.5}          # from iteration 2 on (until a later entry changes it)
      train.learning_rate: [2.0e-4, 1.0e-4]         # iterations 1, 2, ...; the last value holds for later ones
      3: {score: [{name: pointwise_judge}, {name: gold}]}   # the scorer list as a whole (a scorer dropped)

An entry for an iteration the run does not reach never applies (`--set iterations=1` on a recipe with a schedule
for iteration 2 runs iteration 1 as scheduled). Every section an iteration's stages read may vary (propose, search,
generate, score, refine, verify, select, train); the model, data, eval and control stay fixed, so iterations stay
comparable. A stage hashes
the section it reads, so a scheduled value is part of that stage's manifest: changing it reruns exactly the stages
that read it.
"""

from __future__ import annotations

import copy
from typing import Any

SCHEDULABLE = ("propose", "search", "generate", "score", "refine", "verify", "select", "train")


def _iteration_key(key: Any) -> int | None:
    """`2` or `"2"` -> 2 (the iteration form); a dotted key path -> None (the list form)."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    return None


def _flat(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """{select: {builder: {options: {tau: 0.5}}}} (what `--set schedule.2.select.builder.options.tau=0.5` makes) ->
    {"select.builder.options.tau": 0.5}; dotted keys stay as they are."""
    out = {}
    for key, v in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, path + "."))
        else:
            out[path] = v
    return out


def normalise(schedule: dict, iterations: int) -> dict[str, dict[int, Any]]:
    """Both spellings as {key path: {first iteration: value}}; ValueError names the entry that is wrong."""
    out: dict[str, dict[int, Any]] = {}

    def put(path: str, k: int, value: Any, where: str) -> None:
        head = path.split(".", 1)[0]
        if head not in SCHEDULABLE or ("." not in path and path != "score"):
            raise ValueError(f"schedule: {where}: {path!r} is not a key path under {', '.join(SCHEDULABLE)} (e.g. "
                             "select.builder.options.tau, or `score` for the whole scorer list); the model, data, eval and "
                             "control stay fixed across iterations")
        if k < 1:
            raise ValueError(f"schedule: {where}: iteration {k}: iterations count from 1 (0 is the base model's evaluation)")
        if k in out.setdefault(path, {}):
            raise ValueError(f"schedule: {path} is set twice for iteration {k}")
        out[path][k] = value

    for key, value in schedule.items():
        k = _iteration_key(key)
        if k is not None:
            if not isinstance(value, dict) or not value:
                raise ValueError(f"schedule: {key}: expected a mapping of key paths to values, e.g. {{select.builder.options.tau: 0.5}}")
            for path, v in _flat(value).items():
                put(path, k, v, f"{key}.{path}")
        elif isinstance(value, list) and value:
            for i, v in enumerate(value):
                put(str(key), i + 1, v, f"{key}[{i}]")
        else:
            raise ValueError(f"schedule: {key!r}: give an iteration number with a mapping ({{2: {{{key}: ...}}}}) or a key path "
                             "with a list of values for iterations 1, 2, ...")
    if "score" in out and any(p.startswith("score.") for p in out):
        raise ValueError("schedule: `score` (the whole scorer list) and `score.<i>...` paths cannot both be scheduled: the "
                         "list's indices change where it is replaced; give the whole list in each entry that changes it")
    return out


def values_at(schedule: dict[str, dict[int, Any]], k: int) -> dict[str, Any]:
    """The scheduled values in force at iteration k: per key, its latest entry at or before k."""
    out = {}
    for path, by_k in schedule.items():
        due = [i for i in by_k if i <= k]
        if due:
            out[path] = by_k[max(due)]
    return out


def describe(values: dict[str, Any]) -> str:
    """`key=value, ...`: how the console, the dry run and the report show scheduled or searched settings."""
    return ", ".join(f"{k}={v}" for k, v in values.items())


def apply_values(data: dict, values: dict[str, Any]) -> dict:
    """A copy of the config dict `data` with each `a.b.c` (a number indexes a list: `score.1.options.n`) set."""
    data = copy.deepcopy(data)
    for path, value in values.items():
        parts = path.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ValueError(f"schedule: {path}: {where} is not an index of a list of {len(node)}")
                node = node[int(part)]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise ValueError(f"schedule: {path}: {where} is not a mapping")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ValueError(f"schedule: {path}: {last} is not an index of a list of {len(node)}")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ValueError(f"schedule: {path}: {'.'.join(parts[:-1])} is not a mapping")
    return data
