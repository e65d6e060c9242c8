"""Self-consistency: cluster each prompt's answers by equivalence and count votes.

Columns: `vote_count` (V, size of the sample's answer cluster), `vote_share` (V/k, k = samples of
the prompt), `is_majority` (in the top cluster; ties broken by the cluster seen first).
A sample with no answer has V = 0 and is never in the majority.
"""

from __future__ import annotations

from .base import ScoreResult, Scorer, group_by_prompt, register


def cluster_answers(answers: list[str | None], same) -> list[int | None]:
    """Cluster id per answer (None for no answer). `same(pairs)` -> [(bool, err)], e.g. `Equivalence.same`.

    Identical strings share a cluster without a check; distinct strings are compared with each
    cluster's first member (equivalence is treated as transitive).
    """
    reps: list[str] = []
    by_string: dict[str, int] = {}
    out: list[int | None] = []
    for a in answers:
        if a is None or not str(a).strip():
            out.append(None)
            continue
        a = str(a).strip()
        if a in by_string:
            out.append(by_string[a])
            continue
        cid = None
        if reps:
            verdicts = same([(r, a) for r in reps])
            cid = next((j for j, (ok, _err) in enumerate(verdicts) if ok), None)
        if cid is None:
            reps.append(a)
            cid = len(reps) - 1
        by_string[a] = cid
        out.append(cid)
    return out


@register
class MajorityVote(Scorer):
    name = "majority_vote"
    output_columns = ("cluster", "vote_count", "vote_share", "is_majority")

    def _same(self, pairs):
        return self.task.check([a for a, _ in pairs], [b for _, b in pairs])

    def score(self, prompts, samples, progress=None):
        n = len(samples)
        cluster: list[int | None] = [None] * n
        count, share, major = [0] * n, [0.0] * n, [False] * n
        for _pid, idx in group_by_prompt(samples).items():
            ids = cluster_answers([samples[i].get("answer") for i in idx], self._same)
            sizes: dict[int, int] = {}
            for c in ids:
                if c is not None:
                    sizes[c] = sizes.get(c, 0) + 1
            top = max(sizes, key=lambda c: (sizes[c], -c)) if sizes else None
            for i, c in zip(idx, ids):
                cluster[i] = c
                count[i] = sizes.get(c, 0) if c is not None else 0
                share[i] = count[i] / len(idx)
                major[i] = c is not None and c == top
        return ScoreResult({"cluster": cluster, "vote_count": count, "vote_share": share, "is_majority": major}, [None] * n)
