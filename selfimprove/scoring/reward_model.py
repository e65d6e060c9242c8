"""A sequence-classification reward model (transformers) as a scorer: `reward` = its scalar output for
(prompt, response) rendered with the reward model's chat template."""

from __future__ import annotations

from pydantic import Field

from ..options import Options
from .base import Scorer, ScoreResult, SummaryColumn


class RewardModelOptions(Options):
    model: str = Field(description="Hub id or local folder of an AutoModelForSequenceClassification with one label.")
    batch_size: int = Field(16, gt=0)
    device: str = "auto"
    max_length: int = Field(2048, gt=0)


class RewardModel(Scorer):
    """Column `reward`. Options: `model` (hub id or folder of an AutoModelForSequenceClassification with one label),
    `batch_size`, `device`, `max_length`."""

    name = "reward_model"
    writes = ("reward",)
    summary = {"reward": SummaryColumn()}

    Options = RewardModelOptions

    def __init__(self, task, options=None, where=None):
        super().__init__(task, options, where)
        self._model = None

    def _load(self):
        from .own_model import load_own_model

        model, tok, dev = load_own_model(self.options.model, self.options.device, "AutoModelForSequenceClassification", "reward model")
        model.config.pad_token_id = tok.pad_token_id
        tok.padding_side = "right"
        self._model = (model, tok, dev)

    def close(self) -> None:
        self._model = None

    def score(self, prompts, samples, progress=None):
        import torch

        with torch.inference_mode():
            return self._score(prompts, samples, progress)

    def _score(self, prompts, samples, progress=None):
        if self._model is None:
            self._load()
        model, tok, dev = self._model
        texts = []
        for s in samples:
            msgs = list(prompts[s["prompt_id"]]["messages"]) + [{"role": "assistant", "content": s.get("completion") or ""}]
            texts.append(tok.apply_chat_template(msgs, tokenize=False) if tok.chat_template else f"{msgs[-2]['content']}\n{msgs[-1]['content']}")
        bs = self.options.batch_size
        rewards: list[float] = []
        for i in range(0, len(texts), bs):
            enc = tok(texts[i : i + bs], return_tensors="pt", padding=True, truncation=True, max_length=self.options.max_length).to(dev)
            logits = model(**enc).logits.float()
            rewards.extend(logits[:, 0].tolist())
            if progress:
                progress(len(texts[i : i + bs]))
        return ScoreResult({"reward": rewards}, [None] * len(samples))
