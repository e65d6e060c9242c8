"""LLM judges: pointwise (Self-Rewarding's additive 5-point rubric, N judgments averaged) and pairwise
(A vs B, asked in both orders). Templates live in prompts/; unparsable judgments are counted and kept
with their raw text, never scored as zero.

`mode: generate` (default, as in the papers): the judge writes a justification ending in `Score: n` /
`Winner: A|B`, which is parsed. `mode: logprobs` (for judges too weak to follow the format, and for
speed): the reply is pre-filled with `Score:` / `Winner:` and the next token's probabilities decide:
the expected score over low..high, or the likelier of A and B. Nothing is generated, nothing fails to parse.
Between the two, `read_unparsed: true` keeps the written judgments and, for one that ends without a parsable score,
appends `Score: ` to it and takes the likeliest digit as its score, the judgment's text completed with that line
(counted in `judge_read`): a weak judge still writes the judgments a meta-judge compares and the judge is trained on,
each ending in the format, with an integer score as in the paper. Left unparsed: a judgment that wrote an
out-of-range or conflicting score (a read would contradict it), and one where no in-range digit is among the
backend's candidates (servers return the top 20). A judge that writes scores of 10 or more ("8/10") is read by its
first digit: keep `high` below 10 and the rubric's scale.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..config.judge import PASS_THRESHOLD
from ..errors import ConfigError
from ..generation import SamplingParams
from ..groups import indices_by_prompt
from .base import ScoreResult, SummaryColumn
from .judge_base import JudgeOptions, ModelScorer, response_of
from .parsers import parse_pairwise, parse_score, stated_scores


class SamplingOptions(JudgeOptions):
    """How a judgment is sampled (one per item; greedy unless `temperature` is set)."""

    temperature: float | None = Field(None, ge=0)
    max_tokens: int = Field(256, gt=0)
    seed: int = 0

    def params(self, n: int = 1) -> SamplingParams:
        temperature = self.temperature if self.temperature is not None else (0.7 if n > 1 else 0.0)
        return SamplingParams(n=n, temperature=temperature, max_tokens=self.max_tokens, seed=self.seed, logprobs=False)


class PointwiseOptions(SamplingOptions):
    n: int = Field(1, gt=0, description="Judgments per response (averaged); temperature defaults to 0.7 when n > 1.")
    template: str | None = Field(None, description="Default: judge_pointwise (judge_pointwise_ref when reference_guided).")
    reference_guided: bool = False
    low: float = 0
    high: float = 5
    mode: Literal["generate", "logprobs"] = "generate"
    read_unparsed: bool = Field(False, description="mode generate: a written judgment without a parsable `Score: n` gets "
                                "`Score: ` appended; the likeliest next digit is its score and completes its text.")

    @model_validator(mode="after")
    def _n_needs_temperature(self):
        if self.mode == "generate" and self.n > 1 and self.temperature == 0:
            raise ValueError("n > 1 judgments need temperature > 0 (greedy gives the same judgment n times)")
        if self.read_unparsed and self.mode != "generate":
            raise ValueError("read_unparsed reads a score after a written judgment: it needs mode: generate")
        if self.read_unparsed and not (float(self.low).is_integer() and float(self.high).is_integer() and 0 <= self.low < self.high <= 9):
            raise ValueError("read_unparsed reads the score as one digit: low and high must be whole numbers in 0..9")
        return self


class PairwiseOptions(SamplingOptions):
    template: str = "judge_pairwise"
    agreement: Literal["both_orders", "average"] = "both_orders"
    mode: Literal["generate", "logprobs"] = "generate"


def expected_score(logprobs: dict[str, float | None]) -> tuple[float | None, dict[str, float]]:
    """Probability-weighted score over the candidate digits (renormalised over those returned)."""
    got = {k: v for k, v in logprobs.items() if v is not None}
    if not got:
        return None, {}
    m = max(got.values())
    w = {k: float(np.exp(v - m)) for k, v in got.items()}
    z = sum(w.values())
    probs = {k.strip(): v / z for k, v in w.items()}
    return sum(float(k) * p for k, p in probs.items()), probs


class PointwiseJudge(ModelScorer):
    """Columns: `judge_score` (mean of parsed scores, None if none parsed), `judge_var`, `judge_scores`
    (per judgment, None = parse failure), `judge_raw` (texts), `judge_parse_failures` (count), `judge_read` (how many
    scores were read after an unparsed judgment, `read_unparsed`), `judge_prompt` (the messages the judge answered:
    Meta-Rewarding trains the judge on them)."""

    name = "pointwise_judge"
    writes = ("judge_score", "judge_var", "judge_scores", "judge_raw", "judge_parse_failures", "judge_read", "judge_prompt")
    version = 4  # 2: writes judge_prompt; 3: judge_read; 4: a score the response states is not the judge's
    summary = {"judge_score": SummaryColumn(discrete=True, threshold=PASS_THRESHOLD)}
    Options = PointwiseOptions

    def summary_columns(self, pass_threshold=None):
        return {"judge_score": SummaryColumn(discrete=True, threshold=PASS_THRESHOLD if pass_threshold is None else pass_threshold)}

    @classmethod
    def parse_failures(cls, rows):
        """Written judgments without a parsable score, those whose score was read afterwards included."""
        judged = sum(len(r.get("judge_raw") or []) for r in rows)
        unparsed = sum(int(r.get("judge_parse_failures") or 0) + int(r.get("judge_read") or 0) for r in rows)
        return (unparsed, judged) if judged else None

    @classmethod
    def read_after_unparsed(cls, rows):
        read = sum(int(r.get("judge_read") or 0) for r in rows)
        return (read, sum(len(r.get("judge_raw") or []) for r in rows)) if read else None

    def __init__(self, task, options=None, where=None):
        super().__init__(task, options, where)
        o = self.options
        self.mode = o.mode
        self.params = o.params(n=o.n if self.mode == "generate" else 1)
        self.reference_guided = o.reference_guided
        self.template = o.template or ("judge_pointwise_ref" if o.reference_guided else "judge_pointwise")
        self.low, self.high = float(o.low), float(o.high)
        self.digits = [str(k) for k in range(int(self.low), int(self.high) + 1)]  # the score tokens read from log-probs
        self.read_unparsed = o.read_unparsed

    def messages(self, prompt: dict, sample: dict) -> list[dict]:
        v = {"question": prompt["question"], "response": response_of(sample)}
        if self.reference_guided:
            v["reference"] = prompt.get("reference") or ""
        return self.user(self.template, **v)

    def score(self, prompts, samples, progress=None):
        errors: list[str | None] = [None] * len(samples)
        if self.reference_guided:
            missing = [i for i, s in enumerate(samples) if not prompts[s["prompt_id"]].get("reference")]
            if missing:
                raise ConfigError(f"{self.name}: reference_guided needs a reference; prompt {samples[missing[0]]['prompt_id']} has none")
        msgs = [self.messages(prompts[s["prompt_id"]], s) for s in samples]
        if self.mode == "logprobs":
            res = self.score_by_logprobs(msgs, progress)
            res.columns["judge_prompt"] = msgs
            return res
        outs = self.generate_cached(msgs, self.params, progress)
        raws = [[c["text"] for c in comps] for comps in outs]
        judged = [response_of(s) for s in samples]
        parsed = [[parse_score(t, self.low, self.high, r) for t in texts] for r, texts in zip(judged, raws)]
        scores = [[p.value if p.ok else None for p in ps] for ps in parsed]
        read = self.read_scores(msgs, raws, scores, judged) if self.read_unparsed else [0] * len(msgs)  # completes `raws` too
        cols = {c: [] for c in self.writes}
        for i, texts in enumerate(raws):
            vals = [v for v in scores[i] if v is not None]
            fails = [p.error for p, v in zip(parsed[i], scores[i]) if v is None]
            cols["judge_raw"].append(texts)
            cols["judge_scores"].append(scores[i])
            cols["judge_score"].append(float(np.mean(vals)) if vals else None)
            cols["judge_var"].append(float(np.var(vals)) if vals else None)
            cols["judge_parse_failures"].append(len(fails))
            cols["judge_read"].append(read[i])
            cols["judge_prompt"].append(msgs[i])
            if fails:
                errors[i] = f"{self.name}: {len(fails)}/{len(texts)} judgments unparsed ({fails[0]})"
        return ScoreResult(cols, errors)

    def read_scores(self, msgs: list[list[dict]], raws: list[list[str]], scores: list[list[float | None]],
                    judged: list[str]) -> list[int]:
        """For the judgments that did not parse, in place (`raws` too): the likeliest digit after the judgment's own
        text and `Score: ` becomes its score, and its text ends with that line, unless the judgment already stated a
        score of its own (out of range or conflicting: the new line would contradict it; `judged`, the responses, for
        `stated_scores`). Returns how many were read per item."""
        todo = [(i, j) for i, row in enumerate(scores) for j, v in enumerate(row) if v is None]
        digits = self.digits
        lps = self.next_token_cached([msgs[i] for i, _ in todo], digits, [after(raws[i][j], "Score: ") for i, j in todo])
        read = [0] * len(scores)
        for (i, j), d in zip(todo, lps):
            got = {k: v for k, v in d.items() if v is not None}
            if not got:
                continue
            digit = max(got, key=got.get)
            if not stated_scores(raws[i][j], judged[i]):
                scores[i][j], raws[i][j] = float(digit), after(raws[i][j], f"Score: {digit}")
                read[i] += 1
        return read

    def score_by_logprobs(self, msgs: list[list[dict]], progress=None) -> ScoreResult:
        digits = self.digits
        lps = self.next_token_cached(msgs, digits, prefix="Score: ")
        cols: dict[str, list] = {c: [] for c in self.writes if c != "judge_prompt"}
        errors: list[str | None] = []
        for d in lps:
            value, probs = expected_score(d)
            cols["judge_score"].append(value)
            cols["judge_var"].append(None if value is None else float(sum(p * (float(k) - value) ** 2 for k, p in probs.items())))
            cols["judge_scores"].append([value])
            cols["judge_raw"].append(["Score: " + " ".join(f"{k}:{p:.3f}" for k, p in probs.items())])
            cols["judge_parse_failures"].append(int(value is None))
            cols["judge_read"].append(0)  # every score here is read, none written
            errors.append(None if value is not None else f"{self.name}: no score digit among the returned log-probs")
        if progress:
            progress(len(msgs))
        return ScoreResult(cols, errors)


def pair_messages(scorer: ModelScorer, template: str, question: str, a: str, b: str) -> tuple[list[dict], list[dict]]:
    """The same comparison in both orders: (A first, B first)."""
    return (scorer.user(template, question=question, response_a=a, response_b=b), scorer.user(template, question=question, response_a=b, response_b=a))


def combine(ab: str | None, ba: str | None, rule: str) -> tuple[str | None, bool]:
    """Verdict for the first response from the two orders (`ba` is already mapped back); and whether they disagree.

    both_orders: a win counts only when both orders agree; disagreement is a tie. average: A=1, tie=.5,
    B=0 averaged over the parsed orders. None when neither order parsed.
    """
    val = {"A": 1.0, "tie": 0.5, "B": 0.0}
    got = [v for v in (ab, ba) if v is not None]
    if not got:
        return None, False
    flip = ab is not None and ba is not None and ab != ba
    if rule == "both_orders":
        if len(got) < 2:
            return None, False
        return (ab if not flip else "tie"), flip
    m = float(np.mean([val[v] for v in got]))
    return ("A" if m > 0.5 else "B" if m < 0.5 else "tie"), flip


def swap(v: str | None) -> str | None:
    return {"A": "B", "B": "A"}.get(v, v) if v is not None else None


def after(text: str, line: str) -> str:
    """A written judgment with a verdict line appended on a line of its own (an empty judgment is the line alone)."""
    return f"{text.rstrip()}\n{line}" if text.strip() else line


def likelier(a: float | None, b: float | None) -> str:
    """"A" or "B" by their log-probs (None: not among those returned; a tie goes to A); one of them is known."""
    return "A" if b is None or (a is not None and a >= b) else "B"


def logprob_verdicts(scorer: ModelScorer, msgs: list[list[dict]]) -> list[list[dict]]:
    """`Winner:` pre-filled; the likelier of A and B is the verdict, as a fake completion text."""
    out = []
    for d in scorer.next_token_cached(msgs, ["A", "B"], prefix="Winner: "):
        a, b = d.get("A"), d.get("B")
        if a is None and b is None:
            out.append([{"text": ""}])  # neither option among the returned log-probs: a parse failure
            continue
        winner = likelier(a, b)
        out.append([{"text": f"Winner: {winner} (log p A={a}, B={b})"}])
    return out


def judge_pairs(scorer: ModelScorer, template: str, params: SamplingParams, rule: str, items: list[tuple[str, str, str]], progress=None,
                mode: str = "generate") -> list[dict]:
    """Judge (question, a, b) triples in both orders. Each result: verdict (A/B/tie/None), flip, ab, ba, raw_ab, raw_ba."""
    msgs = []
    for q, a, b in items:
        msgs.extend(pair_messages(scorer, template, q, a, b))
    outs = logprob_verdicts(scorer, msgs) if mode == "logprobs" else scorer.generate_cached(msgs, params, progress)
    results = []
    for j, (_, a, b) in enumerate(items):
        raw_ab, raw_ba = outs[2 * j][0]["text"], outs[2 * j + 1][0]["text"]
        judged = a + "\n" + b  # the compared responses, whose own verdict lines are not the judge's
        p_ab, p_ba = parse_pairwise(raw_ab, judged), parse_pairwise(raw_ba, judged)
        ab = p_ab.value if p_ab.ok else None
        ba = swap(p_ba.value) if p_ba.ok else None
        verdict, flip = combine(ab, ba, rule)
        errs = [e for e in (p_ab.error, p_ba.error) if e]
        results.append({"verdict": verdict, "flip": flip, "ab": ab, "ba": ba, "raw_ab": raw_ab, "raw_ba": raw_ba,
                        "parse_failures": len(errs), "error": "; ".join(errs) or None})
    return results


class PairwiseJudge(ModelScorer):
    """Each sample meets the next sample of its prompt (cyclically) in both orders.

    Columns: `pair_win_rate` (win 1, tie 0.5, loss 0 over its games; None if none parsed), `pair_games`,
    `pair_flips` (games whose two orders disagreed: position bias), `pair_parse_failures`, `pair_raw`
    (the judge's texts, both orders of each game).
    Option `agreement`: both_orders (default) or average.
    """

    name = "pairwise_judge"
    version = 2  # 2: a winner line a compared response writes is not the judge's
    groupwise = True
    writes = ("pair_win_rate", "pair_games", "pair_flips", "pair_parse_failures", "pair_raw")
    summary = {"pair_win_rate": SummaryColumn(range=(0.0, 1.0))}
    Options = PairwiseOptions

    @classmethod
    def parse_failures(cls, rows):
        judged = sum(2 * int(r.get("pair_games") or 0) for r in rows)  # each game is judged in both orders
        return (sum(int(r.get("pair_parse_failures") or 0) for r in rows), judged) if judged else None

    def __init__(self, task, options=None, where=None):
        super().__init__(task, options, where)
        self.mode = self.options.mode
        self.template = self.options.template
        self.rule = self.options.agreement
        self.params = self.options.params(n=1)

    def score(self, prompts, samples, progress=None):
        games: list[tuple[int, int]] = []
        for _pid, idx in indices_by_prompt(samples).items():
            if len(idx) >= 2:
                games.extend((idx[j], idx[(j + 1) % len(idx)]) for j in range(len(idx) if len(idx) > 2 else 1))
        items = [(prompts[samples[a]["prompt_id"]]["question"], response_of(samples[a]), response_of(samples[b])) for a, b in games]
        res = judge_pairs(self, self.template, self.params, self.rule, items, progress, self.mode)
        points: list[list[float]] = [[] for _ in samples]
        flips, fails, played = [0] * len(samples), [0] * len(samples), [0] * len(samples)
        raws: list[list[str]] = [[] for _ in samples]
        for (a, b), r in zip(games, res):
            for who, mine in ((a, "A"), (b, "B")):
                raws[who].extend([r["raw_ab"], r["raw_ba"]])
                played[who] += 1
                flips[who] += int(r["flip"])
                fails[who] += r["parse_failures"]
                if r["verdict"] is not None:
                    points[who].append(1.0 if r["verdict"] == mine else 0.5 if r["verdict"] == "tie" else 0.0)
        cols = {
            "pair_win_rate": [float(np.mean(p)) if p else None for p in points],
            "pair_games": played,
            "pair_flips": flips,
            "pair_parse_failures": fails,
            "pair_raw": raws,
        }
        errors = [f"{self.name}: {f} unparsed verdicts" if f else None for f in fails]
        return ScoreResult(cols, errors)
