"""Multi-turn SFT rows: a completion that holds several turns (attempt, a user's instruction, revision, ...) is
trained on every assistant turn in it and on none of the others. TRL masks a completion as a whole (or needs a chat
template with `{% generation %}` marks, which most lack), so such rows are tokenized here: the chat template renders
the conversation, each assistant turn's tokens are found as the difference between the renders before and after it,
and TRL gets `input_ids` with a `completion_mask` that is 1 on those tokens only (the labels TRL builds from it)."""

from __future__ import annotations


def is_multi_turn(rows: list[dict]) -> bool:
    """Some row's completion has a turn that is not the assistant's."""
    return any(m.get("role") != "assistant" for r in rows for m in r["completion"])


def _ids(tok, messages: list[dict], *, generation_prompt: bool) -> list[int]:
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_turns(tok, prompt: list[dict], completion: list[dict]) -> dict[str, list[int]]:
    """`input_ids` of prompt + completion as the chat template renders them, and `completion_mask`: 1 on the tokens of
    each assistant turn of the completion (its text and the template's end of turn), 0 elsewhere."""
    full = _ids(tok, prompt + completion, generation_prompt=False)
    mask = [0] * len(full)
    for i, m in enumerate(completion):
        if m.get("role") != "assistant":
            continue
        start = _common(_ids(tok, prompt + completion[:i], generation_prompt=True), full)
        end = _common(_ids(tok, prompt + completion[: i + 1], generation_prompt=False), full)
        if end <= start or (m.get("content") or "").strip() not in tok.decode(full[start:end]):
            raise ValueError(f"multi-turn SFT: the chat template renders assistant turn {i + 1} of the completion differently "
                             "inside the conversation than at its end (e.g. it drops or adds reasoning), so its tokens cannot "
                             "be found to train on; use a template that renders every turn the same, or one-turn rows")
        mask[start:end] = [1] * (end - start)
    return {"input_ids": full, "completion_mask": mask}
