"""A process reward model (PRM) as a scorer, Math-Shepherd style: the solution is split into steps, a step tag token
follows each step, and the PRM (a causal LM) reads at each tag the probability of its "good" token against its "bad"
one. `prm_steps` is the per-step score, `prm_score` their aggregate: the minimum by default (a solution is as good as
its worst step; B-STaR's min over steps). For a user's PRM: set the model and its tokens (Math-Shepherd: step tag
"ки", good "+", bad "-").
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..options import Options
from .base import Scorer, ScoreResult, SummaryColumn


class PRMOptions(Options):
    model: str = Field(description="Hub id or local folder of the PRM (a causal LM trained with step tags).")
    step_separator: str = Field("\n", description="What separates the steps of a solution (empty steps are dropped).")
    step_tag: str = Field("ки", description="The token the PRM reads a step's score at (one token of its tokenizer).")
    good_token: str = Field("+", description="The PRM's token for a right step.")
    bad_token: str = Field("-", description="The PRM's token for a wrong step.")
    aggregate: Literal["min", "mean", "last", "prod"] = Field("min", description="Steps' scores -> prm_score.")
    batch_size: int = Field(8, gt=0)
    device: str = "auto"
    max_length: int = Field(2048, gt=0)


def aggregate(scores: list[float], how: str) -> float | None:
    """min / mean / last / prod of the step scores; None for a solution without steps."""
    if not scores:
        return None
    if how == "min":
        return min(scores)
    if how == "mean":
        return sum(scores) / len(scores)
    if how == "last":
        return scores[-1]
    out = 1.0
    for s in scores:
        out *= s
    return out


class ProcessRewardModel(Scorer):
    """Columns `prm_steps` (per step: p(good) / (p(good) + p(bad)) at its tag), `prm_score` (their aggregate)."""

    name = "prm"
    writes = ("prm_steps", "prm_score")
    summary = {"prm_score": SummaryColumn(range=(0.0, 1.0))}
    Options = PRMOptions

    def __init__(self, task, options=None, where=None):
        super().__init__(task, options, where)
        self._model = None

    def _load(self):
        from ..errors import ConfigError
        from .own_model import load_own_model

        o = self.options
        model, tok, dev = load_own_model(o.model, o.device, "AutoModelForCausalLM", "PRM")
        path = o.model
        ids = {}
        for key, text in (("step_tag", " " + o.step_tag), ("good_token", o.good_token), ("bad_token", o.bad_token)):
            enc = tok.encode(text, add_special_tokens=False)  # the tag as it follows a step: after a space
            if len(enc) != 1:
                raise ConfigError(f"score: prm option {key} {getattr(o, key)!r} is {len(enc)} tokens for {path}'s tokenizer "
                                  f"({'after a space, ' if key == 'step_tag' else ''}it must be one)")
            ids[key] = enc[0]
        self._model = (model, tok, dev, ids)

    def close(self) -> None:
        self._model = None

    def steps(self, completion: str) -> list[str]:
        return [s.strip() for s in (completion or "").split(self.options.step_separator) if s.strip()]

    def score(self, prompts, samples, progress=None):
        import torch

        if self._model is None:
            self._load()
        model, tok, dev, ids = self._model
        o = self.options
        texts, n_steps = [], []
        for s in samples:
            steps = self.steps(s.get("completion"))
            n_steps.append(len(steps))
            question = prompts[s["prompt_id"]].get("question") or ""
            texts.append(question + "\n" + "".join(f"{st} {o.step_tag}\n" for st in steps))
        out_steps: list[list[float]] = []
        with torch.inference_mode():
            for i in range(0, len(texts), o.batch_size):
                enc = tok(texts[i : i + o.batch_size], return_tensors="pt", padding=True, truncation=True, max_length=o.max_length).to(dev)
                logits = model(**enc).logits.float()
                pair = torch.softmax(logits[..., [ids["good_token"], ids["bad_token"]]], dim=-1)[..., 0]
                for row, mask in zip(pair, enc["input_ids"] == ids["step_tag"]):
                    out_steps.append([float(v) for v in row[mask].tolist()])
                if progress:
                    progress(len(texts[i : i + o.batch_size]))
        errors = [None if len(st) == n else f"prm: {n - len(st)} of {n} steps cut by max_length" if len(st) < n
                  else f"prm: {len(st)} step tags for {n} steps (the solution itself holds the tag token)" for st, n in zip(out_steps, n_steps)]
        return ScoreResult({"prm_steps": out_steps, "prm_score": [aggregate(st, o.aggregate) for st in out_steps]}, errors)
