"""Read completions produced elsewhere (`selfimprove eval --predictions preds.jsonl`) into sample rows.

One JSON object per line: `id` (the problem's id: HumanEval `task_id`, MATH-500 `unique_id`, otherwise
the 0-based row index) or `question` (the exact problem text); `completion` (a string, scored as the
greedy answer) and/or `completions` (a list, scored for pass@k / maj@k); optional `revision` (the
turn-2 answer of a self-correction suite).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError


def _sample(pid: str, j: int, text: str, mode: str, turn: int) -> dict:
    return {"prompt_id": pid, "sample_id": f"{pid}/{mode[0]}{j:04d}", "turn": turn, "completion": text, "num_tokens": 0,
            "logprob_sum": None, "finish_reason": "stop", "model_ref": "predictions", "iteration": 0, "mode": mode}


def read_predictions(path: Path, prompt_rows: list[dict]) -> tuple[dict[str, list[dict]], set[str]]:
    """Sample rows by mode (greedy / sampled / revision) and the prompt ids that have a prediction."""
    if not path.is_file():
        raise ConfigError(f"--predictions: file not found: {path}")
    by_id = {p["prompt_id"]: p for p in prompt_rows}
    by_question = {p["question"].strip(): p["prompt_id"] for p in prompt_rows}
    out: dict[str, list[dict]] = {"greedy": [], "sampled": [], "revision": []}
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: not valid JSON: {e}") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{where}: expected a JSON object")
            if "id" in obj:
                pid = str(obj["id"])
                if pid not in by_id:
                    raise ConfigError(f"{where}: unknown id {pid!r} (ids look like {list(by_id)[:3]})")
            elif "question" in obj:
                pid = by_question.get(str(obj["question"]).strip())
                if pid is None:
                    raise ConfigError(f"{where}: question not found in the suite's problems: {str(obj['question'])[:80]!r}")
            else:
                raise ConfigError(f"{where}: needs `id` or `question`")
            if pid in seen:
                raise ConfigError(f"{where}: a second prediction for problem {pid!r} (first on line {seen[pid]})")
            seen[pid] = lineno
            if "completion" not in obj and "completions" not in obj:
                raise ConfigError(f"{where}: needs `completion` (a string) or `completions` (a list of strings)")
            if "completion" in obj:
                if not isinstance(obj["completion"], str):
                    raise ConfigError(f"{where}: `completion` must be a string")
                out["greedy"].append(_sample(pid, 0, obj["completion"], "greedy", 1))
            if "completions" in obj:
                comps = obj["completions"]
                if not isinstance(comps, list) or not comps or not all(isinstance(c, str) for c in comps):
                    raise ConfigError(f"{where}: `completions` must be a non-empty list of strings")
                out["sampled"].extend(_sample(pid, j, c, "sampled", 1) for j, c in enumerate(comps))
            if "revision" in obj:
                if not isinstance(obj["revision"], str) or "completion" not in obj:
                    raise ConfigError(f"{where}: `revision` must be a string, next to the turn-1 `completion`")
                out["revision"].append(_sample(pid, 0, obj["revision"], "revision", 2))
    return out, set(seen)
