"""Batched sampling that drops finished rows: transformers' model forward, KV cache and logits warpers,
in a decode loop that removes a sequence from the batch (and the cache) as soon as it ends.

`model.generate` keeps finished rows in the batch until the longest one ends; on a CPU, where a
decode step costs in proportion to the batch, that wastes a quarter to a third of the work once
a model answers concisely. Log-probs are the model's own (raw logits, temperature 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


@torch.inference_mode()
def decode_pruned(model, tok, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
                  temperature: float, top_p: float, eos_ids: set[int], stop: tuple[str, ...] = ()) -> list[DecodedRow]:
    """Sample (or greedy-decode when temperature is 0) every row of a left-padded batch."""
    from transformers import DynamicCache

    n_rows = input_ids.shape[0]
    rows = [DecodedRow([], [], False) for _ in range(n_rows)]
    active = torch.arange(n_rows)  # original row index of each batch position
    warp = _warpers(temperature, top_p)
    eos = torch.tensor(sorted(eos_ids), device=input_ids.device)
    tail = max((len(tok(s, add_special_tokens=False).input_ids) for s in stop), default=0) + 2
    cache = DynamicCache()
    mask = attention_mask
    position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
    step_ids = input_ids
    for _ in range(max_new_tokens):
        logits = model(
            input_ids=step_ids, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True, logits_to_keep=1
        ).logits[:, -1, :].float()
        logp = torch.log_softmax(logits, dim=-1)
        if temperature > 0:
            probs = torch.softmax(warp(None, logits), dim=-1)
            next_tok = torch.multinomial(probs, 1)
        else:
            next_tok = logits.argmax(-1, keepdim=True)
        next_lp = logp.gather(1, next_tok).squeeze(1).tolist()
        done = torch.isin(next_tok.squeeze(1), eos)
        for pos, (r, t, lp) in enumerate(zip(active.tolist(), next_tok.squeeze(1).tolist(), next_lp)):
            row = rows[r]
            row.tokens.append(t)
            row.logprobs.append(lp)
            if done[pos]:
                row.finished = True
            elif stop:
                text = tok.decode(row.tokens[-tail:], skip_special_tokens=True)
                if any(s and s in text for s in stop):
                    row.finished = True
                    done[pos] = True
        keep = (~done).nonzero().squeeze(1)
        if keep.numel() == 0:
            break
        if keep.numel() < done.numel():
            cache.batch_select_indices(keep)
            active, next_tok, mask, position_ids = active[keep], next_tok[keep], mask[keep], position_ids[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        position_ids = position_ids[:, -1:] + 1
        step_ids = next_tok
    return rows
