"""A sequence-classification reward model (transformers) as a scorer: `reward` = its scalar output for
(prompt, response) rendered with the reward model's chat template."""

from __future__ import annotations

import torch

from ..config import ConfigError
from .base import ScoreResult, Scorer, register


@register
class RewardModel(Scorer):
    """Column `reward`. Options: `model` (hub id or folder of an AutoModelForSequenceClassification with one label),
    `batch_size`, `device`, `max_length`."""

    name = "reward_model"
    output_columns = ("reward",)

    @classmethod
    def option_names(cls):
        return ["model", "batch_size", "device", "max_length"]

    def __init__(self, task, options):
        super().__init__(task, options)
        if not options.get("model"):
            raise ConfigError("score[reward_model].options.model: give the reward model (hub id or local folder)")
        self._model = None

    def _load(self):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ..errors import ModelError
        from ..generation.hf import pick_device
        from ..models import resolve_model

        path = resolve_model(str(self.options["model"]))
        dev = pick_device(self.options.get("device", "auto"))
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32 if dev.type == "cpu" else torch.bfloat16)
        except OSError as e:
            raise ModelError(f"cannot load reward model {path}: {e}") from None
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model.config.pad_token_id = tok.pad_token_id
        tok.padding_side = "right"
        self._model = (model.to(dev).eval(), tok, dev)

    @torch.inference_mode()
    def score(self, prompts, samples, progress=None):
        if self._model is None:
            self._load()
        model, tok, dev = self._model
        texts = []
        for s in samples:
            msgs = list(prompts[s["prompt_id"]]["messages"]) + [{"role": "assistant", "content": s.get("completion") or ""}]
            texts.append(tok.apply_chat_template(msgs, tokenize=False) if tok.chat_template else f"{msgs[-2]['content']}\n{msgs[-1]['content']}")
        bs = int(self.options.get("batch_size", 16))
        rewards: list[float] = []
        for i in range(0, len(texts), bs):
            enc = tok(texts[i : i + bs], return_tensors="pt", padding=True, truncation=True, max_length=int(self.options.get("max_length", 2048))).to(dev)
            logits = model(**enc).logits.float()
            rewards.extend(logits[:, 0].tolist())
            if progress:
                progress(len(texts[i : i + bs]))
        return ScoreResult({"reward": rewards}, [None] * len(samples))
