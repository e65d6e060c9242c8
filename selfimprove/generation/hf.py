"""transformers backend: batched `model.generate` with length-sorted batches, n samples, log-probs.

The CPU default. float32 on CPU (bf16 has no fast kernels on most CPUs); prompts are sorted by
length so each batch pads little, and the batch holds `batch_size` sequences (prompts x n).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..devices import pick_device, pick_dtype
from ..errors import ModelError
from .base import (
    Completion,
    Generator,
    GeneratorInfo,
    ProgressFn,
    Request,
    SamplingParams,
    TextScore,
    candidate_tokens,
    cut_at_stop,
    end_of_turn_id,
    per_request,
)
from .decode import decode_pruned

log = logging.getLogger("selfimprove.generation")


def load_causal_lm(model_path, dtype: str = "auto", device: str = "auto", adapter: Path | None = None):
    """Load a causal LM + tokenizer for inference (left padding, pad token set)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    try:
        tok = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=pick_dtype(dtype, dev))
    except OSError as e:  # missing files, unknown hub id, no network
        raise ModelError(f"cannot load model {model_path}: {e}") from None
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.to(dev).eval()
    return model, tok


class LogprobRecorder:
    """Per-token log p(token) under the model itself (raw logits, temperature 1), recorded during `generate`.

    A forward hook on the output embedding keeps the last two steps' log-softmax; used as a logits
    processor, it reads the token chosen at the previous step from `input_ids`. Unlike
    `output_logits=True` it never holds more than two (batch x vocab) tensors.
    """

    def __init__(self, model):
        self.prev = self.cur = None
        self.steps: list[torch.Tensor] = []
        self.handle = model.get_output_embeddings().register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.prev, self.cur = self.cur, torch.log_softmax(output[:, -1, :].float(), dim=-1)

    def __call__(self, input_ids, scores):
        if self.prev is not None:
            self.steps.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        return scores

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(rows, steps) log-probs of `new_tokens`; positions after a row's EOS hold padding values."""
        steps = self.steps + [self.cur.gather(1, new_tokens[:, len(self.steps) : len(self.steps) + 1]).squeeze(1)]
        return torch.stack(steps, dim=1)

    def remove(self) -> None:
        self.handle.remove()


class TransformersGenerator(Generator):
    def __init__(self, model_path, backend, adapter: Path | None = None):
        self.model, self.tok = load_causal_lm(model_path, backend.dtype, backend.device, adapter)
        self.device = self.model.device
        self.batch_size = backend.batch_size
        self.prune_finished = backend.prune_finished if backend.prune_finished is not None else self.device.type == "cpu"
        self.info = GeneratorInfo("transformers", str(model_path), {"dtype": str(self.model.dtype), "device": str(self.device),
                                                                    "prune_finished": self.prune_finished})
        self._set_eos()

    @classmethod
    def wrap(cls, model, tokenizer, batch_size: int = 64) -> "TransformersGenerator":
        """A generator over a model already in memory (a model being trained: its dev accuracy between steps), decoding
        as the backend does; `tokenizer` must pad on the left. Closing it leaves the model alone. A PEFT model decodes
        through its base model, whose layers carry the adapters (PEFT injects them in place): the same weights, and a
        forward signature the pruned decoder can read."""
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        gen = cls.__new__(cls)
        gen.model, gen.tok, gen.device, gen.batch_size = model, tokenizer, model.device, batch_size
        gen.prune_finished = gen.device.type == "cpu"
        gen.info = GeneratorInfo("transformers", "in-memory", {"device": str(gen.device)})
        gen._set_eos()
        gen.close = lambda: None
        return gen

    def _set_eos(self) -> None:
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tok.eos_token_id}
        self.eos_ids.add(self.tok.pad_token_id)  # rows that finished early are padded
        self.eos_ids.discard(None)

    def render(self, messages: list[dict]) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[Request], params: SamplingParams, progress: ProgressFn | None = None) -> list[list[Completion]]:
        texts = [self.render(r.messages) for r in requests]
        lengths = [len(self.tok(t, add_special_tokens=False).input_ids) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # longest first: OOM shows up early
        per_batch = max(1, self.batch_size // params.n)
        torch.manual_seed(params.seed)
        results: list[list[Completion] | None] = [None] * len(texts)
        for start in range(0, len(order), per_batch):
            idx = order[start : start + per_batch]
            outs = self._generate_batch([texts[i] for i in idx], params)
            for j, i in enumerate(idx):
                results[i] = outs[j * params.n : (j + 1) * params.n]
            if progress:
                progress(len(idx))
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate_batch(self, texts: list[str], params: SamplingParams) -> list[Completion]:
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        if self.prune_finished:
            return self._decode_pruned(enc, params)
        from transformers import LogitsProcessorList

        sample = params.temperature > 0
        kwargs = dict(
            max_new_tokens=params.max_tokens,
            do_sample=sample,
            num_return_sequences=params.n,
            pad_token_id=self.tok.pad_token_id,
        )
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tok)
        recorder = LogprobRecorder(self.model) if params.logprobs else None
        try:
            if recorder is not None:
                kwargs["logits_processor"] = LogitsProcessorList([recorder])
            sequences = self.model.generate(**enc, **kwargs)
        finally:
            if recorder is not None:
                recorder.remove()
        new = sequences[:, enc.input_ids.shape[1] :]
        logprob_steps = recorder.finish(new) if recorder is not None else None
        completions = []
        for row in range(new.shape[0]):
            ids = new[row].tolist()
            n_tok, hit_eos = len(ids), False
            for t, token in enumerate(ids):
                if token in self.eos_ids:
                    n_tok, hit_eos = t + 1, True
                    break
            lp = float(logprob_steps[row, :n_tok].sum()) if logprob_steps is not None else None
            # a row that ended early without EOS was stopped by a stop string (HF's criterion also
            # matches across the prompt boundary, so the text may not contain it)
            ended = hit_eos or bool(params.stop and n_tok < params.max_tokens)
            completions.append(self._completion(ids[:n_tok], lp, ended, params))
        return completions

    def _decode_pruned(self, enc, params: SamplingParams) -> list[Completion]:
        rows = decode_pruned(
            self.model, self.tok, enc.input_ids, enc.attention_mask, max_new_tokens=params.max_tokens, temperature=params.temperature,
            top_p=params.top_p, eos_ids=self.eos_ids, stop=tuple(params.stop), logprobs=params.logprobs, n=params.n,
        )
        return [self._completion(r.tokens, sum(r.logprobs) if params.logprobs else None, r.finished, params) for r in rows]

    def _completion(self, ids: list[int], logprob_sum: float | None, ended: bool, params: SamplingParams) -> Completion:
        text = self.tok.decode(ids, skip_special_tokens=True)
        text, hit_stop = cut_at_stop(text, params.stop)
        return Completion(text, len(ids), logprob_sum, "stop" if (ended or hit_stop) else "length")

    # -- scoring existing text (no sampling) ------------------------------------------------
    @torch.inference_mode()
    def _forward_right_padded(self, seqs: list[list[int]]):
        """Logits of right-padded sequences (right padding keeps every real token's position id)."""
        width = max(len(x) for x in seqs)
        pad = self.tok.pad_token_id
        ids = torch.tensor([x + [pad] * (width - len(x)) for x in seqs], device=self.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in seqs], device=self.device)
        return self.model(input_ids=ids, attention_mask=mask).logits

    def _batches(self, lengths: list[int]):
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        size = max(1, self.batch_size // 4)  # full-sequence logits: (batch x length x vocab) floats
        for start in range(0, len(order), size):
            yield order[start : start + size]

    def score_texts(self, requests: list[Request], continuations: list[str], end: bool = False) -> list[TextScore]:
        prompts = [self.tok(self.render(r.messages), add_special_tokens=False).input_ids for r in requests]
        tail = [end_of_turn_id(self.tok)] if end else []
        conts = [self.tok(c, add_special_tokens=False).input_ids + tail for c in continuations]
        out: list[TextScore | None] = [None] * len(requests)
        for idx in self._batches([len(p) + len(c) for p, c in zip(prompts, conts)]):
            logits = self._forward_right_padded([prompts[i] + conts[i] for i in idx])
            for row, i in enumerate(idx):
                p, c = len(prompts[i]), conts[i]
                if not c:
                    out[i] = TextScore(0.0, 0)
                    continue
                lp = torch.log_softmax(logits[row, p - 1 : p - 1 + len(c)].float(), dim=-1)
                vals = lp.gather(1, torch.tensor(c, device=lp.device)[:, None]).squeeze(1)
                out[i] = TextScore(float(vals.sum()), len(c))
        return out  # type: ignore[return-value]

    def next_token_logprobs(self, requests: list[Request], candidates: list[str], prefix: str | list[str] = "") -> list[dict[str, float | None]]:
        encode = lambda t: self.tok(t, add_special_tokens=False).input_ids  # noqa: E731
        split = [candidate_tokens(encode, self.render(r.messages) + p, candidates) for r, p in zip(requests, per_request(prefix, len(requests)))]
        prompts = [s[0] for s in split]
        out: list[dict | None] = [None] * len(requests)
        for idx in self._batches([len(p) for p in prompts]):
            logits = self._forward_right_padded([prompts[i] for i in idx])
            for row, i in enumerate(idx):
                lp = torch.log_softmax(logits[row, len(prompts[i]) - 1].float(), dim=-1)
                out[i] = {c: float(lp[t]) for c, t in split[i][1].items()}
        return out  # type: ignore[return-value]

    def close(self) -> None:
        del self.model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
