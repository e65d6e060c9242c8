"""Batched sampling that drops finished rows: transformers' model forward, KV cache and logits warpers,
in a decode loop that removes a sequence from the batch (and the cache) as soon as it ends.

`model.generate` keeps finished rows in the batch until the longest one ends; on a CPU, where a
decode step costs in proportion to the batch, that wastes a quarter to a third of the work once
a model answers concisely. Log-probs are the model's own (raw logits, temperature 1).
Three more costs `model.generate` pays on a CPU are left out: the n samples of a prompt share one prefill (the
prompt's KV cache is computed once and repeated, where `num_return_sequences` prefills every copy), so does the
start all prompts of a batch share (the chat template's system turn: 28 of the quickstart's 41 tokens), and a token is
drawn by inverse CDF, one uniform per row (`torch.multinomial` draws one exponential per vocabulary entry: 49k per
row, 22 of the 209 ms of a decode step at batch 32 on a 2-core CPU). Greedy text stays that of `model.generate`
(tests/test_decode_parity.py).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from ..errors import BackendError


@dataclass
class DecodedRow:
    tokens: list[int]
    logprobs: list[float]
    finished: bool  # ended by EOS or a stop string (else by the token budget)


def _warpers(temperature: float, top_p: float):
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    out = LogitsProcessorList()
    if temperature > 0 and temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if temperature > 0 and top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    return out


def cache_keyword(model) -> str:
    """The forward keyword that takes the KV cache: `cache` (transformers >= 5.24) or `past_key_values` (before).

    Both releases accept unknown keywords silently (`**kwargs`), so a wrong name would decode every step
    without context; a model whose forward names neither is refused rather than guessed at.
    """
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise BackendError(
        f"{type(model).__name__}.forward takes neither `cache` nor `past_key_values`, so the pruned decoder cannot "
        "pass it a KV cache; set `backend.prune_finished: false` to decode with `model.generate`"
    )


def _check_cache(cache, expected: int, keyword: str) -> None:
    """Fail loudly when the model did not fill the cache it was given (decoding would lose all context)."""
    got = cache.get_seq_length()
    if got != expected:
        import transformers

        raise BackendError(
            f"the model ignored the KV cache passed as `{keyword}=` (cache holds {got} positions, expected {expected}; "
            f"transformers {transformers.__version__}): decoding would run without context. "
            "Set `backend.prune_finished: false` and report this transformers version."
        )


MIN_SHARED = 8  # a shorter common start is prefilled with the rest (the extra forward would cost more than it saves)


def _first_token(mask_row: torch.Tensor) -> int:
    """Where a left-padded row's tokens start."""
    return int(mask_row.shape[0] - mask_row.sum())


def shared_prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many leading tokens every (left-padded) row shares, leaving each row at least one token of its own; 0 when
    that is under MIN_SHARED or there is one row."""
    if input_ids.shape[0] < 2:
        return 0
    starts = [_first_token(m) for m in attention_mask]
    width = min(input_ids.shape[1] - st for st in starts) - 1
    first = input_ids[0, starts[0] : starts[0] + width]
    same = torch.ones(width, dtype=torch.bool, device=input_ids.device)
    for row, st in zip(input_ids[1:], starts[1:]):
        same &= row[st : st + width] == first
    k = int(same.long().cumprod(0).sum()) if width > 0 else 0
    return k if k >= MIN_SHARED else 0


def _drop_prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int, pad_id: int | None):
    """The rows without their first k tokens, left-padded again (ids, mask)."""
    rows = [ids[_first_token(m) + k :] for ids, m in zip(input_ids, attention_mask)]
    width = max(len(r) for r in rows)
    ids = input_ids.new_full((len(rows), width), pad_id if pad_id is not None else 0)
    mask = attention_mask.new_zeros((len(rows), width))
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    return ids, mask


def sample_rows(probs: torch.Tensor) -> torch.Tensor:
    """One token id per row of `probs` (rows sum to 1, up to rounding), drawn by inverse CDF: the first id whose
    cumulative probability exceeds a uniform draw scaled to the row's total. The distribution `torch.multinomial`
    samples, at the cost of a cumulative sum; an id of probability 0 is never drawn."""
    cdf = probs.double().cumsum(-1)
    u = torch.rand((probs.shape[0], 1), dtype=cdf.dtype, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1)


@torch.inference_mode()
def decode_pruned(model, tok, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
                  temperature: float, top_p: float, eos_ids: set[int], stop: tuple[str, ...] = (),
                  logprobs: bool = True, n: int = 1) -> list[DecodedRow]:
    """Sample (or greedy-decode when temperature is 0) every row of a left-padded batch; with `n`, n rows per
    prompt (prompt i's samples are rows i*n .. i*n+n-1), which share the prompt's prefill; a start every prompt
shares (`shared_prefix`) is prefilled once for all of them.

    With `logprobs=False` the rows' `logprobs` stay empty (no log-softmax over the vocabulary per step).
    """
    from transformers import DynamicCache

    n_rows = input_ids.shape[0] * n
    rows = [DecodedRow([], [], False) for _ in range(n_rows)]
    active = torch.arange(n_rows)  # original row index of each batch position
    warp = _warpers(temperature, top_p)
    eos = torch.tensor(sorted(eos_ids), device=input_ids.device)
    tail = max((len(tok(s, add_special_tokens=False).input_ids) for s in stop), default=0) + 2
    cache = DynamicCache(config=model.config)
    keyword = cache_keyword(model)
    step_ids, mask = input_ids, attention_mask
    shared = shared_prefix(input_ids, attention_mask)
    if shared:  # the prompts' common start (a chat template's system turn): prefilled once, its cache repeated per prompt
        start = _first_token(attention_mask[0])
        model(input_ids=input_ids[:1, start : start + shared], use_cache=True, logits_to_keep=1, **{keyword: cache})
        _check_cache(cache, shared, keyword)
        cache.batch_repeat_interleave(input_ids.shape[0])
        step_ids, rest = _drop_prefix(input_ids, attention_mask, shared, tok.pad_token_id)
        mask = torch.cat([attention_mask.new_ones((input_ids.shape[0], shared)), rest], dim=1)
    position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
    for step in range(max_new_tokens):
        logits = model(
            input_ids=step_ids, attention_mask=mask, position_ids=position_ids, use_cache=True, logits_to_keep=1, **{keyword: cache}
        ).logits[:, -1, :].float()
        _check_cache(cache, mask.shape[1], keyword)
        if step == 0 and n > 1:  # each prompt's prefill, repeated for its n samples
            cache.batch_repeat_interleave(n)
            logits, mask, position_ids = (t.repeat_interleave(n, 0) for t in (logits, mask, position_ids))
        if temperature > 0:
            probs = torch.softmax(warp(None, logits), dim=-1)
            next_tok = sample_rows(probs)
        else:
            next_tok = logits.argmax(-1, keepdim=True)
        if logprobs:
            for r, lp in zip(active.tolist(), torch.log_softmax(logits, dim=-1).gather(1, next_tok).squeeze(1).tolist()):
                rows[r].logprobs.append(lp)
        hit_eos = torch.isin(next_tok.squeeze(1), eos).tolist()
        kept: list[int] = []
        for pos, (r, t, ended) in enumerate(zip(active.tolist(), next_tok.squeeze(1).tolist(), hit_eos)):
            row = rows[r]
            row.tokens.append(t)
            if not ended and stop:
                text = tok.decode(row.tokens[-tail:], skip_special_tokens=True)
                ended = any(s and s in text for s in stop)
            if ended:
                row.finished = True
            else:
                kept.append(pos)
        if not kept:
            break
        if len(kept) < len(hit_eos):
            keep = torch.tensor(kept, device=next_tok.device)
            cache.batch_select_indices(keep)
            active = active[torch.tensor(kept)]  # `active` stays on the CPU
            next_tok, mask, position_ids = next_tok[keep], mask[keep], position_ids[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        position_ids = position_ids[:, -1:] + 1
        step_ids = next_tok
    return rows
