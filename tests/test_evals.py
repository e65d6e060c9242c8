"""pass@k (against brute force), maj@k tie rules, bootstrap intervals, metric table."""

import itertools
import math

import numpy as np
import pytest

from selfimprove.evaluation.metrics import bootstrap_ci, compute_metrics, format_metric, ks_for, majority_correct, pass_at_k


@pytest.mark.parametrize("n,c,k", [(4, 1, 1), (4, 1, 2), (5, 2, 3), (8, 0, 4), (8, 8, 1), (6, 3, 6), (10, 1, 9)])
def test_pass_at_k_matches_brute_force(n, c, k):
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
    assert math.isclose(pass_at_k(n, c, k), brute, rel_tol=1e-9)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_majority_tie_goes_to_earliest_cluster():
    assert majority_correct([1, 0, 0, 1], [True, False, False, True], 4) is True
    assert majority_correct([0, 1, 1, 0], [False, True, True, False], 4) is False
    assert majority_correct([None, None], [False, False], 2) is False
    assert majority_correct([0, 1, 1, 1], [True, False, False, False], 1) is True


def test_ks():
    assert ks_for(8) == [1, 2, 4, 8]
    assert ks_for(6) == [1, 2, 4, 6]
    assert ks_for(1) == [1]


def test_bootstrap_ci_brackets_mean_and_narrows():
    rng = np.random.default_rng(0)
    small = rng.random(50) < 0.3
    big = rng.random(2000) < 0.3
    lo, hi = bootstrap_ci(small)
    assert lo <= small.mean() <= hi
    blo, bhi = bootstrap_ci(big)
    assert (bhi - blo) < (hi - lo)
    assert bootstrap_ci(np.ones(10)) == (1.0, 1.0)


def test_compute_metrics():
    greedy = [{"prompt_id": "a", "correct": True}, {"prompt_id": "b", "correct": False}]
    samples = []
    for pid, outcomes, clusters in [("a", [1, 1, 0, 0], [0, 0, 1, 2]), ("b", [0, 0, 0, 1], [0, 0, 0, 1])]:
        for j, (o, c) in enumerate(zip(outcomes, clusters)):
            samples.append({"prompt_id": pid, "sample_id": f"{pid}/s{j:04d}", "correct": bool(o), "cluster": c})
    m = compute_metrics(greedy, samples, resamples=200)
    assert m["accuracy"] == 0.5 and m["num_problems"] == 2 and m["samples_per_problem"] == 4
    assert m["pass@1"] == pytest.approx((0.5 + 0.25) / 2)
    assert m["pass@4"] == 1.0
    assert m["maj@4"] == 0.5  # a: cluster 0 (correct) wins; b: cluster 0 (wrong) wins
    assert len(m["accuracy_ci"]) == 2 and m["accuracy_ci"][0] <= 0.5 <= m["accuracy_ci"][1]


def test_format_metric():
    assert format_metric(0.412, [0.385, 0.439]) == "41.2 ± 2.7"
