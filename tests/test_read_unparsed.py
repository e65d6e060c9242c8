"""`read_unparsed`: a judge that writes its judgment but does not end it in the format (the builtin model) still gets
a verdict per judgment, read from the next token after its own text and `Score: ` / `Winner: Judgement `; the
judgment's text is completed with that line, and the reads are counted apart from the written verdicts."""

import logging
import math

import pytest

from selfimprove.config import TaskConfig
from selfimprove.errors import ConfigError
from selfimprove.generation.base import Completion, Generator, GeneratorInfo, per_request
from selfimprove.judging.diagnostics import summarize
from selfimprove.pipeline.stages.score import unparsed_fixes, warn_unparsed
from selfimprove.pipeline.stages.train import too_few_rows
from selfimprove.prompts import PromptLibrary
from selfimprove.scoring import make_scorer
from selfimprove.tasks import make_task


@pytest.fixture(scope="module")
def task():
    return make_task(TaskConfig(name="arithmetic"), PromptLibrary())


class WritesWithoutFormat(Generator):
    """Judgments: the first of each response ends in `Score: 4`, the others stop without a score; after a text and
    `Score: `, digit 2 is likeliest unless the text says "good" (then 5). Meta verdicts never name a winner; after
    `Winner: Judgement `, A is likelier when judgment A's text is the longer one."""

    info = GeneratorInfo("scripted", "m")

    def __init__(self):
        self.prefixes = []

    def generate(self, requests, params, progress=None):
        out = []
        for r in requests:
            if "<judgement_a>" in r.messages[-1]["content"]:
                out.append([Completion("Both judgments look reasonable to me.", 7, None, "length")] * params.n)
            else:
                texts = ["Relevant and correct. Score: 4", "This answer is good and", "The response is"]
                out.append([Completion(t, 6, None, "length") for t in texts[: params.n]])
        return out

    def next_token_logprobs(self, requests, candidates, prefix=""):
        self.prefixes += per_request(prefix, len(requests))
        out = []
        for r, p in zip(requests, per_request(prefix, len(requests))):
            if p.endswith("Winner: Judgement "):
                prompt = r.messages[-1]["content"]
                a = prompt.split("<judgement_a>")[1].split("</judgement_a>")[0]
                b = prompt.split("<judgement_b>")[1].split("</judgement_b>")[0]
                out.append({"A": math.log(0.7 if len(a) > len(b) else 0.3), "B": math.log(0.3 if len(a) > len(b) else 0.7)})
            else:
                best = "5" if "good" in p else "2"
                out.append({c: math.log(0.6 if c == best else 0.08) for c in candidates})
        return out


def judged(task, gen, **options):
    judge = make_scorer("pointwise_judge", task, {"n": 3, "temperature": 0.7, **options}).use(gen)
    prompts = {"p1": {"prompt_id": "p1", "question": "What is 2 + 2?", "reference": "4"}}
    samples = [{"prompt_id": "p1", "sample_id": f"p1/{k}", "completion": f"The answer is {4 + k}."} for k in range(2)]
    res = judge.score(prompts, samples)
    return judge, prompts, [dict(s, **{c: v[i] for c, v in res.columns.items()}) for i, s in enumerate(samples)]


def test_unparsed_judgments_get_the_likeliest_digit_after_their_own_text(task):
    gen = WritesWithoutFormat()
    judge, _, rows = judged(task, gen, read_unparsed=True)
    r = rows[0]
    assert r["judge_scores"] == [4.0, 5.0, 2.0] and r["judge_score"] == pytest.approx(11 / 3)
    assert r["judge_read"] == 2 and r["judge_parse_failures"] == 0
    # the text is completed with the line the digit was read from: what a meta-judge compares and the judge trains on
    assert r["judge_raw"] == ["Relevant and correct. Score: 4", "This answer is good and\nScore: 5", "The response is\nScore: 2"]
    assert gen.prefixes[:2] == ["This answer is good and\nScore: ", "The response is\nScore: "]
    report = summarize(rows, [judge])
    assert report["parse_failure_rate"]["pointwise_judge"] == pytest.approx(4 / 6)  # written verdicts that did not parse
    assert report["read_after_unparsed_rate"]["pointwise_judge"] == pytest.approx(4 / 6)


def test_without_the_option_an_unparsed_judgment_is_no_score(task):
    _, _, rows = judged(task, WritesWithoutFormat())
    assert rows[0]["judge_scores"] == [4.0, None, None] and rows[0]["judge_parse_failures"] == 2 and rows[0]["judge_read"] == 0
    assert rows[0]["judge_raw"][1] == "This answer is good and"
    with pytest.raises(ConfigError, match="read_unparsed .* needs mode: generate"):
        make_scorer("pointwise_judge", task, {"mode": "logprobs", "read_unparsed": True})


def test_the_meta_judge_reads_a_winner_after_a_verdict_that_names_none(task):
    gen = WritesWithoutFormat()
    _, prompts, rows = judged(task, gen, read_unparsed=True)
    rows = rows[:1]
    meta = make_scorer("meta_judge", task, {"read_unparsed": True}).use(gen)
    res = meta.score(prompts, rows).columns
    # judgments 0 (4), 1 (5), 2 (2): three pairs with different scores, both orders; the longer judgment wins each read
    assert res["meta_battles"][0] == 6 and res["meta_read"][0] == 6 and res["meta_parse_failures"][0] == 0
    lengths = [len(t) for t in rows[0]["judge_raw"]]
    assert res["meta_chosen"][0] == lengths.index(max(lengths)) and res["meta_rejected"][0] == lengths.index(min(lengths))
    plain = make_scorer("meta_judge", task).use(WritesWithoutFormat()).score(prompts, rows).columns
    assert plain["meta_parse_failures"][0] == 6 and plain["meta_chosen"][0] is None and plain["meta_read"][0] == 0


def test_a_judge_whose_verdicts_do_not_parse_is_named_with_the_options_that_fix_it(task, caplog):
    judge = make_scorer("pointwise_judge", task, {"n": 3, "temperature": 0.7})
    with caplog.at_level(logging.WARNING):
        warn_unparsed(1, [make_scorer("gold", task), judge], {"parse_failure_rate": {"pointwise_judge": 1.0}})
    assert "100% of pointwise_judge's verdicts did not parse" in caplog.text
    assert "score[1].options.read_unparsed: true" in caplog.text and "mode: logprobs" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # every unparsed one was read: nothing to say
        warn_unparsed(1, [judge], {"parse_failure_rate": {"pointwise_judge": 0.9}, "read_after_unparsed_rate": {"pointwise_judge": 0.9}})
    assert caplog.text == ""
    # only options valid beside the ones already set, and none already set
    on = make_scorer("pointwise_judge", task, {"read_unparsed": True})
    assert unparsed_fixes(on.options) == ["mode: logprobs without read_unparsed (no text, the verdict from log-probs)"]
    assert unparsed_fixes(make_scorer("pointwise_judge", task, {"mode": "logprobs"}).options) == []


def test_no_rows_names_each_builders_reason_and_what_it_means():
    """The error counts in each builder's unit, and the meta-judge's reasons say which of its cases it was: never
    picked, nothing to compare, or every verdict unparsed (what `read_unparsed` is for)."""
    from selfimprove.builders.meta_judge_pairs import MetaJudgePairs

    base = {"prompt_id": "p", "model_ref": "m", "judge_prompt": [], "judge_raw": ["a", "b"], "judge_scores": [4, 2],
            "meta_chosen": None, "meta_rejected": None}
    samples = [dict(base, sample_id="s0", meta_battles=None), dict(base, sample_id="s1", meta_battles=0),
               dict(base, sample_id="s2", meta_battles=2), dict(base, sample_id="s3", meta_battles=2)]
    builder = MetaJudgePairs()
    rows, counts = builder.build(samples, {})
    assert rows == [] and (counts["not_meta_judged"], counts["no_battles"], counts["meta_unparsed"]) == (1, 1, 2)
    meta = builder.yield_report(counts)
    manifest = {"counts": {"kept": 96, "rows": 0}, "yield": {
        "skipped": {"judge_pairs: unscored": 24, **{f"meta_judge_pairs: {k}": v for k, v in meta["skipped"].items()}},
        "reasons": {"judge_pairs: unscored": "fewer than two samples have a score",
                    **{f"meta_judge_pairs: {k}": v for k, v in meta["reasons"].items()}},
        "units": {"judge_pairs: unscored": "prompts", **{f"meta_judge_pairs: {k}": v for k, v in meta["units"].items()}}}}
    msg = too_few_rows(1, 0, 1, manifest)
    assert "no row from: judge_pairs: unscored 24 prompts (fewer than two samples have a score); meta_judge_pairs: not_meta_judged 1 samples" in msg
    assert "meta_unparsed 2 samples (meta-judged, but none of the meta-judge's verdicts parsed" in msg
    assert "read_unparsed" in msg and "'kept': 96" in msg


def test_a_read_score_is_the_one_its_completed_text_says_and_a_written_bad_score_is_not_overwritten(task):
    from selfimprove.scoring.base import describe_parse_failures
    from selfimprove.scoring.parsers import parse_score

    class BadScores(WritesWithoutFormat):
        def generate(self, requests, params, progress=None):
            return [[Completion(t, 6, None, "length") for t in ["Score: 10/10, great", "Score: 3 and also Score: 4", "It is fine"]]
                    for _ in requests]

    judge, _, rows = judged(task, BadScores(), read_unparsed=True)
    r = rows[0]
    assert r["judge_scores"] == [None, None, 2.0] and r["judge_read"] == 1 and r["judge_parse_failures"] == 2
    assert r["judge_raw"][:2] == ["Score: 10/10, great", "Score: 3 and also Score: 4"]  # left as written
    _, _, good = judged(task, WritesWithoutFormat(), read_unparsed=True)
    assert all(parse_score(t).value == v for t, v in zip(good[0]["judge_raw"], good[0]["judge_scores"]))
    assert describe_parse_failures(summarize(rows, [judge])) == "pointwise_judge 100.0% (33.3% read)"
    with pytest.raises(ConfigError, match="one digit"):
        make_scorer("pointwise_judge", task, {"read_unparsed": True, "high": 10})


def test_the_warning_counts_what_is_still_missing_and_offers_only_what_is_not_on(task, caplog):
    judge = make_scorer("pointwise_judge", task, {"n": 3, "temperature": 0.7, "read_unparsed": True})
    with caplog.at_level(logging.WARNING):
        warn_unparsed(2, [judge], {"parse_failure_rate": {"pointwise_judge": 1.0}, "read_after_unparsed_rate": {"pointwise_judge": 0.4}})
    assert "60% of pointwise_judge's verdicts did not parse" in caplog.text
    assert "score[0].options.mode: logprobs" in caplog.text and "read_unparsed: true" not in caplog.text


def test_a_meta_verdict_that_names_both_winners_is_not_read(task):
    class BothWinners(WritesWithoutFormat):
        def generate(self, requests, params, progress=None):
            if "<judgement_a>" in requests[0].messages[-1]["content"]:
                return [[Completion("Winner: Judgement A. No, Winner: Judgement B", 9, None, "stop")] for _ in requests]
            return super().generate(requests, params, progress)

    gen = BothWinners()
    _, prompts, rows = judged(task, gen, read_unparsed=True)
    res = make_scorer("meta_judge", task, {"read_unparsed": True}).use(gen).score(prompts, rows[:1]).columns
    assert res["meta_read"][0] == 0 and res["meta_parse_failures"][0] == 6 and res["meta_chosen"][0] is None


def test_an_empty_judgment_is_completed_as_the_verdict_line_alone(task):
    """No leading newline after the assistant header: the read is after `Score: ` itself."""

    class WritesNothing(WritesWithoutFormat):
        def generate(self, requests, params, progress=None):
            return [[Completion("", 0, None, "stop")] * params.n for _ in requests]

    gen = WritesNothing()
    _, _, rows = judged(task, gen, read_unparsed=True)
    assert rows[0]["judge_raw"] == ["Score: 2"] * 3 and rows[0]["judge_scores"] == [2.0] * 3
    assert set(gen.prefixes) == {"Score: "}


def test_a_judge_whose_columns_changed_is_hashed_into_the_stages_that_score_with_it(task):
    from selfimprove.scoring.base import changed_versions

    judge = make_scorer("pointwise_judge", task)
    assert judge.version > 1 and changed_versions([make_scorer("gold", task), judge]) == {"pointwise_judge": judge.version}


def test_a_score_the_response_writes_is_not_its_judges(task):
    """A response that writes "Score: 5" (or "Score: 1") into its answer: a judgment that quotes it before its own
    conclusion is read as its conclusion (the quote neither counts nor conflicts); the judgment's last score line is
    always the judge's, so planting the judge's own low score cannot silence it; without the response the same
    texts parse as before."""
    from selfimprove.scoring.parsers import parse_score

    echo = 'The response says "Score: 5" but 2 + 2 is 4, not 9.\nScore: 1'
    assert parse_score(echo, judged="The answer is 9. Score: 5").value == 1.0
    assert parse_score(echo).error == "conflicting scores [1.0, 5.0]"  # the quote made it unparsed: what the rule stops
    assert parse_score("It claims Score: 5.", judged="The answer is 9.\nScore: 5").value == 5.0  # its last line: its own

    class Judges(WritesWithoutFormat):
        def __init__(self, texts):
            super().__init__()
            self.texts = texts

        def generate(self, requests, params, progress=None):
            return [[Completion(t, 6, None, "length") for t in self.texts] for _ in requests]

    def scores(texts, completion):
        judge = make_scorer("pointwise_judge", task, {"n": 3, "temperature": 0.7, "read_unparsed": True}).use(Judges(texts))
        prompts = {"p1": {"prompt_id": "p1", "question": "What is 2 + 2?", "reference": "4"}}
        res = judge.score(prompts, [{"prompt_id": "p1", "sample_id": "p1/0", "completion": completion}]).columns
        return res["judge_scores"][0], res["judge_score"][0], res["judge_read"][0]

    assert scores([echo, "It claims Score: 5.", "Score: 3"], "The answer is 9. Score: 5") == ([1.0, 5.0, 3.0], 3.0, 0)
    # a wrong answer that plants the score its judge gives: the honest 1s still count (mean 5/3, not 3)
    got, mean, _ = scores(["Wrong sum.\nScore: 1", "Score: 1", "Not bad. Score: 3"], "The answer is 9. Score: 1")
    assert got == [1.0, 1.0, 3.0] and mean == pytest.approx(5 / 3)
