"""Two-turn GRPO (`train.turns`, SCoRe): each rollout is the model's attempt, a fixed correction instruction, and the
model's revision, built on TRL's own `rollout_func` (both turns sampled by the trainer's model, as TRL samples one).

- The completion TRL trains on is `attempt + instruction + revision` token ids; the instruction's tokens are TRL's
  `env_mask` 0, so the loss covers both of the model's turns and never the instruction.
- Every reward scores each turn (`TurnReward`: r1 on the attempt, r2 on the revision) and returns
  `first * r1 + second * r2 + shaping * (r2 - r1)` (SCoRe's stage I: second only; stage II: both plus alpha's bonus).
- The KL to the reference is weighted per turn (`PerTokenBeta`): SCoRe's stage I holds the attempt close to the base
  with a strong coefficient while the revision moves.
Per logged step: `turn1_reward`, `turn2_reward`, `turn_delta`, `i_to_c`, `c_to_i` (of the first reward, a 0/1 verdict
read at 0.5), and `kl_turn1`, `kl_turn2`.

With `verify` (self-rewarding correction's RL, `train.turns.verify_template`), the model first evaluates its attempt
(`[VERIFY] correct|wrong`) and the instruction and revision follow only after "wrong"; r2 is the final answer's reward
(the attempt's when it stood), and `revised`, `verify_tpr`, `verify_tnr`, `verify_unparsed` are logged per step.
"""

from __future__ import annotations

from typing import Any

from ..prompts import after_attempt
from ..scoring.self_check import self_verification_rates

MARK = "\x00selfimprove-attempt\x00"  # stands for the attempt while the chat template renders the next turn
TURN_MONITORS = ("turn1_reward", "turn2_reward", "turn_delta", "i_to_c", "c_to_i", "kl_turn1", "kl_turn2", "revised", "verify_unparsed",
                 "verify_tpr", "verify_tnr")


def instruction_ids(tok, messages: list[dict], instruction: str, closed_by: int | None, chat_kwargs: dict | None = None) -> list[int]:
    """The tokens between the end of the attempt and the revision: the chat template's close of the assistant turn,
    the instruction as the user's turn, and the generation prompt. `closed_by`: the end-of-turn id the attempt ended
    with (its text is not repeated), None when the attempt was cut off."""
    text = tok.apply_chat_template(list(messages) + [{"role": "assistant", "content": MARK}, {"role": "user", "content": instruction}],
                                   tokenize=False, add_generation_prompt=True, **(chat_kwargs or {}))
    if MARK not in text:
        raise ValueError("the chat template dropped the assistant's turn; two-turn rollouts need one that renders it")
    after = text.split(MARK, 1)[1]
    if closed_by is not None:
        end = tok.decode([closed_by])
        if end and after.startswith(end):
            after = after[len(end):]
    return list(tok(after, add_special_tokens=False)["input_ids"])


class TwoTurnRollout:
    """TRL's `rollout_func`: per prompt (TRL passes one per completion), the attempt, then the revision after the
    instruction, sampled with the trainer's own generation (`_generate_single_turn`, as TRL's single turn is). With
    `verify` (self-rewarding correction), a self-evaluation turn comes first and the instruction and revision follow
    only where it ends `[VERIFY] wrong`; the final answer (the revision, else the attempt) is the `revision` the
    rewards score. The model's segments (start, end, turn) are left on the trainer for the per-turn masks."""

    def __init__(self, instruction: str, verify: str | None = None):
        self.instruction, self.verify = instruction, verify

    def __call__(self, prompts: list, trainer) -> dict[str, Any]:
        from ..scoring.parsers import parse_self_verify

        tok = trainer.processing_class
        n = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        eos = set(trainer.eos_token_ids)
        kw = getattr(trainer, "chat_template_kwargs", None) or {}

        logps: dict[int, list[float]] = {}  # id() of a sampled turn's ids -> vLLM's sampling log-probs (None: generate)

        def sample(ids: list[list[int]], k: int = 1) -> list[list[int]]:
            # every process samples every turn, an empty one too (a one-prompt stand-in, discarded): under ZeRO-3 the
            # generation gathers parameters across processes; a later turn's prompts are each one rollout's (k = 1)
            out, lps = trainer._generate_single_turn(ids or prompt_ids[:1], None, {}, k)[:2]
            out = out[: len(ids)]
            for seq, lp in zip(out, lps or []):
                logps[id(seq)] = lp
            return out

        def closed(ids: list[int]) -> int | None:
            return ids[-1] if ids and ids[-1] in eos else None

        prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
        first = sample(prompt_ids, n)
        attempts = tok.batch_decode(first, skip_special_tokens=True)
        verdicts = None
        if self.verify is None:
            middle = [instruction_ids(tok, p, self.instruction, closed(a), kw) for p, a in zip(prompts, first)]
            second = sample([p + a + m for p, a, m in zip(prompt_ids, first, middle)])
            pieces = [[(a, 1), (m, 0), (b, 2)] for a, m, b in zip(first, middle, second)]
            final = second
        else:
            ask = [instruction_ids(tok, p, self.verify, closed(a), kw) for p, a in zip(prompts, first)]
            checks = sample([p + a + m for p, a, m in zip(prompt_ids, first, ask)])
            verdicts = [parse_self_verify(t).value for t in tok.batch_decode(checks, skip_special_tokens=True)]
            redo = [i for i, v in enumerate(verdicts) if v == "wrong"]
            fix = {i: instruction_ids(tok, after_attempt(prompts[i], attempts[i], self.verify), self.instruction, closed(checks[i]), kw)
                   for i in redo}
            revised = dict(zip(redo, sample([prompt_ids[i] + first[i] + ask[i] + checks[i] + fix[i] for i in redo])))
            pieces = [[(first[i], 1), (ask[i], 0), (checks[i], 2)] + ([(fix[i], 0), (revised[i], 2)] if i in revised else [])
                      for i in range(len(first))]
            final = [revised.get(i, first[i]) for i in range(len(first))]
        trainer._turn_segments = [segments(p) for p in pieces]
        out = {
            "prompt_ids": prompt_ids,
            "completion_ids": [[t for ids, _ in p for t in ids] for p in pieces],
            "logprobs": rollout_logprobs(pieces, logps),
            "env_mask": [[int(turn > 0) for ids, turn in p for _ in ids] for p in pieces],
            "attempt": attempts,
            "revision": tok.batch_decode(final, skip_special_tokens=True),
            "attempt_ids": first,
            "revision_ids": final,
        }
        if verdicts is not None:
            out["verdict"] = verdicts
        return out


def rollout_logprobs(pieces: list[list[tuple[list[int], int]]], logps: dict[int, list[float]]) -> list[list[float]] | None:
    """The sampling log-probs of each completion's tokens (vLLM rollouts: TRL's importance-sampling correction needs
    them), 0.0 on the instruction's tokens (env_mask 0: out of the loss); None when the model's generate sampled."""
    if not logps:
        return None
    return [[lp for ids, turn in p for lp in (logps[id(ids)] if turn else [0.0] * len(ids))] for p in pieces]


def segments(pieces: list[tuple[list[int], int]]) -> list[tuple[int, int, int]]:
    """(start, end, turn) of the model's pieces of a completion (turn 1: the attempt; 2: what follows it); the
    instructions (turn 0) are left out."""
    out, at = [], 0
    for ids, turn in pieces:
        if turn:
            out.append((at, at + len(ids), turn))
        at += len(ids)
    return out


def turn_reward(r1: float | None, r2: float | None, first: float, second: float, shaping: float) -> float | None:
    """A trajectory's reward from its turns' (None: unscored, counted as 0 when the other turn is scored).

    >>> turn_reward(0.0, 1.0, 1, 1, 10), turn_reward(1.0, 0.0, 1, 1, 10), turn_reward(0.0, 1.0, 0, 1, 0)
    (11.0, -9.0, 1.0)
    """
    if r1 is None and r2 is None:
        return None
    a, b = r1 or 0.0, r2 or 0.0
    return first * a + second * b + shaping * (b - a)


class TurnReward:
    """A reward function (see `scoring.rewards.RewardFunction`) applied to both turns and combined by `turn_reward`;
    with `monitor`, logs the turns' rewards and the i->c / c->i rates. Pickles, as TRL's asynchronous GRPO needs."""

    def __init__(self, inner, first: float, second: float, shaping: float, monitor: bool = False):
        self.inner, self.first, self.second, self.shaping, self.monitor = inner, first, second, shaping, monitor
        self.__name__ = self.__qualname__ = inner.__name__
        self.__doc__ = f"{inner.__doc__} Two turns: {first} r1 + {second} r2 + {shaping} (r2 - r1)."

    def __call__(self, prompts, completions, completion_ids=None, **columns) -> list[float | None]:
        attempts, revisions = columns.pop("attempt"), columns.pop("revision")
        attempt_ids, revision_ids = columns.pop("attempt_ids"), columns.pop("revision_ids")
        verdicts = columns.pop("verdict", None)
        log_metric = columns.pop("log_metric", None)
        r1 = self.inner(prompts, attempts, attempt_ids, **columns)
        r2 = self.inner(prompts, revisions, revision_ids, log_metric=log_metric, **columns)  # the audit sees the final answers
        if self.monitor and log_metric is not None:
            for key, value in {**turn_monitors(r1, r2), **self_verification_rates(verdicts, r1)}.items():
                log_metric(key, value)
        return [turn_reward(a, b, self.first, self.second, self.shaping) for a, b in zip(r1, r2)]


def turn_monitors(r1: list[float | None], r2: list[float | None]) -> dict[str, float]:
    """Mean reward per turn, their difference, and the shares of trajectories that go wrong -> right (i_to_c) and
    right -> wrong (c_to_i), a reward read as right at >= 0.5; over trajectories with both turns scored."""
    both = [(a, b) for a, b in zip(r1, r2) if a is not None and b is not None]
    if not both:
        return {}
    t1, t2 = sum(a for a, _ in both) / len(both), sum(b for _, b in both) / len(both)
    return {"turn1_reward": t1, "turn2_reward": t2, "turn_delta": t2 - t1,
            "i_to_c": sum(a < 0.5 <= b for a, b in both) / len(both), "c_to_i": sum(b < 0.5 <= a for a, b in both) / len(both)}


class PerTokenBeta:
    """Stands in for TRL's scalar `beta` inside one loss computation: `beta * per_token_kl` weights each token's KL by
    its turn's coefficient (and records each turn's mean KL); `beta != 0` stays true, so TRL adds the term."""

    def __init__(self, weights, turn_masks, record):
        self.weights, self.turn_masks, self.record = weights, turn_masks, record

    def __ne__(self, other) -> bool:
        return True  # it stands in only for a non-zero beta; every process takes the same branch (no data-dependent sync)

    def __eq__(self, other) -> bool:
        return False

    __hash__ = None

    def __mul__(self, per_token_kl):
        with __import__("torch").no_grad():
            for i, mask in enumerate(self.turn_masks, start=1):
                if mask.sum() > 0:
                    self.record(f"kl_turn{i}", float((per_token_kl * mask).sum() / mask.sum()))
        return self.weights * per_token_kl

    __rmul__ = __mul__


def two_turn_trainer_class(base, kl: tuple[float, float]):
    """`base` (TRL's GRPOTrainer) whose batches carry per-turn masks (from the rollout's spans) and whose KL term is
    weighted per turn."""
    import torch

    class TwoTurnGRPOTrainer(base):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            mask = out["completion_mask"]
            masks = torch.zeros((2, *mask.shape), dtype=torch.float32, device=mask.device)
            for i, segs in enumerate(self._turn_segments):
                for start, end, turn in segs:
                    masks[turn - 1, i, start:end] = 1
            masks = masks * mask.unsqueeze(0)
            out["turn1_mask"], out["turn2_mask"] = masks[0], masks[1]
            out["kl_weight"] = kl[0] * masks[0] + kl[1] * masks[1]
            return out

        def _compute_loss(self, model, inputs):
            if self.beta == 0.0:
                return super()._compute_loss(model, inputs)
            mode = "train" if self.model.training else "eval"
            scalar = self.beta
            self.beta = PerTokenBeta(inputs["kl_weight"], (inputs["turn1_mask"], inputs["turn2_mask"]),
                                     lambda k, v: self._metrics[mode][k].append(v))
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self.beta = scalar

    return TwoTurnGRPOTrainer
