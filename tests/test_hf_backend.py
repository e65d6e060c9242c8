"""transformers backend on the tiny model: n samples, greedy determinism, seeds, stop strings, log-probs."""

import pytest
import torch

from selfimprove.config import TransformersBackendConfig
from selfimprove.generation import Request, SamplingParams, make_generator
from selfimprove.generation.base import cut_at_stop


@pytest.fixture(scope="module", params=[True, False], ids=["pruned", "generate"])
def gen(tiny_model_path, request):
    g = make_generator(TransformersBackendConfig(batch_size=8, prune_finished=request.param), tiny_model_path)
    yield g
    g.close()


REQS = [Request(f"p{i}", [{"role": "user", "content": f"What is {i} + {i * 3}?" + " pad" * i}]) for i in range(5)]


def test_n_samples_in_request_order(gen):
    outs = gen.generate(REQS, SamplingParams(n=3, temperature=1.0, max_tokens=8, seed=1))
    assert [len(o) for o in outs] == [3] * 5
    for comps in outs:
        for c in comps:
            assert c.finish_reason in ("stop", "length") and 1 <= c.num_tokens <= 8
            assert c.logprob_sum is not None and c.logprob_sum <= 0


def test_seeded_sampling_is_reproducible(gen):
    p = SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=7)
    a = [[c.text for c in o] for o in gen.generate(REQS, p)]
    b = [[c.text for c in o] for o in gen.generate(REQS, p)]
    c = [[c.text for c in o] for o in gen.generate(REQS, SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=8))]
    assert a == b and a != c


def test_greedy_matches_unbatched(gen):
    p = SamplingParams(n=1, temperature=0.0, max_tokens=6)
    batched = [o[0].text for o in gen.generate(REQS, p)]
    single = [gen.generate([r], p)[0][0].text for r in REQS]
    assert batched == single


def test_logprob_sum_matches_teacher_forcing(gen):
    out = gen.generate(REQS[:1], SamplingParams(n=1, temperature=1.0, max_tokens=6, seed=3))[0][0]
    prompt = gen.render(REQS[0].messages)
    p_ids = gen.tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    c_ids = gen.tok(out.text, return_tensors="pt", add_special_tokens=False).input_ids
    if c_ids.shape[1] != out.num_tokens:  # decode/encode round trip changed tokens (or EOS): skip
        pytest.skip("tokenisation round trip differs")
    ids = torch.cat([p_ids, c_ids], 1)
    with torch.no_grad():
        logits = gen.model(ids).logits[0, p_ids.shape[1] - 1 : -1]
    ref = torch.log_softmax(logits.float(), -1).gather(1, c_ids[0][:, None]).sum().item()
    assert out.logprob_sum == pytest.approx(ref, abs=1e-3)


def test_greedy_rejects_n_above_1():
    with pytest.raises(ValueError, match="greedy"):
        SamplingParams(n=2, temperature=0.0)


def test_cut_at_stop():
    assert cut_at_stop("a\n\nb", ["\n\n"]) == ("a", True)
    assert cut_at_stop("abc", ["x", ""]) == ("abc", False)
    assert cut_at_stop("1 STOP 2 END", ["END", "STOP"]) == ("1 ", True)


def test_stop_strings_end_generation(gen):
    free = gen.generate(REQS, SamplingParams(n=1, temperature=0.0, max_tokens=16))
    texts = [c.text for o in free for c in o]
    # a two-character piece of a greedy completion as the stop string, then decode again with it
    probe = next(t for t in texts if len(t) > 4)[2:4]
    outs = gen.generate(REQS, SamplingParams(n=1, temperature=0.0, max_tokens=16, stop=(probe,)))
    assert any(probe in t for t in texts)
    for o_free, o_stop in zip(free, outs):
        for a, b in zip(o_free, o_stop):
            assert probe not in b.text
            if probe in a.text:
                assert b.finish_reason == "stop" and a.text.startswith(b.text) and b.num_tokens <= a.num_tokens


def test_pruned_and_generate_agree_greedily(tiny_model_path):
    p = SamplingParams(n=1, temperature=0.0, max_tokens=10)
    texts = {}
    for prune in (True, False):
        g = make_generator(TransformersBackendConfig(batch_size=4, prune_finished=prune), tiny_model_path)
        texts[prune] = [o[0].text for o in g.generate(REQS, p)]
        g.close()
    assert texts[True] == texts[False]


def test_n_samples_share_the_prompts_prefill_and_keep_their_logprobs(tiny_model_path):
    """The pruned decoder prefills each prompt once and repeats its cache for the n samples: every sample's log-prob
    sum still equals teacher forcing on its own text (a wrong cache, mask or position would shift it), and the
    samples differ (each row draws its own tokens)."""
    g = make_generator(TransformersBackendConfig(batch_size=8, prune_finished=True), tiny_model_path)
    try:
        outs = g.generate(REQS[1:3], SamplingParams(n=4, temperature=1.0, max_tokens=6, seed=5))
        checked = 0
        for req, comps in zip(REQS[1:3], outs):
            assert len({c.text for c in comps}) > 1
            p_ids = g.tok(g.render(req.messages), return_tensors="pt", add_special_tokens=False).input_ids
            for c in comps:
                c_ids = g.tok(c.text, return_tensors="pt", add_special_tokens=False).input_ids
                if c_ids.shape[1] != c.num_tokens:  # the decode/encode round trip changed tokens (or EOS)
                    continue
                with torch.no_grad():
                    logits = g.model(torch.cat([p_ids, c_ids], 1)).logits[0, p_ids.shape[1] - 1 : -1]
                ref = torch.log_softmax(logits.float(), -1).gather(1, c_ids[0][:, None]).sum().item()
                assert c.logprob_sum == pytest.approx(ref, abs=1e-3)
                checked += 1
        assert checked >= 4
    finally:
        g.close()


def test_rows_are_sampled_from_their_distribution():
    """Inverse-CDF sampling draws each id with its probability and never one of probability 0."""
    from selfimprove.generation.decode import sample_rows

    torch.manual_seed(0)
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.6, 0.0, 0.2]])
    draws = torch.cat([sample_rows(probs) for _ in range(20000)], dim=1)
    for row in range(3):
        freq = torch.bincount(draws[row], minlength=5).float() / draws.shape[1]
        assert torch.allclose(freq, probs[row], atol=0.012), (row, freq)
        assert (freq[probs[row] == 0] == 0).all()


def test_the_batchs_shared_start_is_found_behind_left_padding():
    from selfimprove.generation.decode import MIN_SHARED, _drop_prefix, shared_prefix

    common = list(range(100, 100 + MIN_SHARED + 2))
    rows = [common + [1, 2, 3], common + [4], common + [5, 6]]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    k = shared_prefix(ids, mask)
    assert k == len(common)  # each row keeps a token of its own
    rest, rest_mask = _drop_prefix(ids, mask, k, pad_id=0)
    assert rest.tolist() == [[1, 2, 3], [0, 0, 4], [0, 5, 6]] and rest_mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert shared_prefix(ids[:1], mask[:1]) == 0  # one row: nothing to share
    assert shared_prefix(torch.tensor([common[:3] + [7], common[:3] + [8]]), torch.ones(2, 4, dtype=torch.long)) == 0  # too short
    same = torch.tensor([common + [9], common + [9]])
    assert shared_prefix(same, torch.ones_like(same)) == len(common)  # identical prompts: all but the last token


def test_next_token_logprobs_take_a_prefix_per_request(gen):
    """A judge's own text before `Score: `, one per request, batched: as each asked alone."""
    digits = [str(k) for k in range(6)]
    prefixes = [f"Judgment {i}: it adds up{'.' * i}\nScore: " for i in range(len(REQS))]
    batched = gen.next_token_logprobs(REQS, digits, prefixes)
    alone = [gen.next_token_logprobs([r], digits, p)[0] for r, p in zip(REQS, prefixes)]
    assert all(b[d] == pytest.approx(a[d], abs=1e-4) for b, a in zip(batched, alone) for d in digits)
    assert batched[0] != batched[3]  # each request got its own prefix
    with pytest.raises(ValueError, match="2 prefixes for 5 requests"):
        gen.next_token_logprobs(REQS, digits, prefixes[:2])
