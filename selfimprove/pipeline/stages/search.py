"""Search stage (B-STaR): before an iteration samples its train prompts, choose its sampling temperature and reward
threshold on a slice of them. At each temperature of `search.temperatures` sample `search.n` completions of the first
`search.prompts` train prompts with the iteration's model, score them with the run's scorers, and for each threshold
tau of `search.thresholds` select as the iteration would (its `select:` filters and caps, plus `search.column` above
tau; with `search.target_size`, a per-prompt cap grown to it in place of select's caps; without it,
`select.target_size` scaled by the slice's share of the iteration's samples); the pair whose kept set has
the highest balance score wins (ties: the first in grid order). The stage's table holds every (temperature, tau) with its balance score and kept counts;
its manifest's `chosen` holds the settings the iteration then runs with (`generate.temperature`,
`select.min_score`), which the generate and select stages hash like any other setting."""

from __future__ import annotations

from ...config import PipelineConfig
from ...config.select import ScoreThreshold
from ...models import ModelRef, reachable
from ...runtime.context import RunContext
from ...runtime.generate_shards import generate_sharded
from ...runtime.runner import run_stage
from ...scoring.apply import score_samples
from ...scoring.base import versions_of
from ...selection import select_samples
from ...selection.filters import balance_score, graded
from ...store import StageDir


def chosen_settings(temperature: float, tau: float, column: str) -> dict:
    """The config values a search result sets, as schedule-style key paths."""
    return {"generate.temperature": temperature, "select.min_score": {"column": column, "tau": tau, "strict": True}}


def search_stage(ctx: RunContext, iteration: int, cfg: PipelineConfig, prompts_sd: StageDir, model: ModelRef) -> StageDir:
    """Reads `prompts`; writes the grid table and, in its manifest's extra, `chosen` (see the module docstring)."""
    s = cfg.search
    config = {"search": s.model_dump(), "generate": cfg.generate.model_dump(), "score": [c.model_dump() for c in cfg.score],
              "select": cfg.select.model_dump(), "backend": ctx.backend.identity(), "seed": cfg.seed}
    versions = versions_of([(c.name, c.options) for c in cfg.score], ctx.task)
    if versions:
        config["versions"] = versions
    if s.target_size is None and cfg.select.target_size is not None:  # select's target, scaled to the slice (it was dropped)
        config["select_target"] = "scaled"
    sd = ctx.store.stage(iteration, "search", config, {"prompts": prompts_sd.fingerprint, "model": model.fingerprint})

    def work(sd: StageDir):
        all_rows = prompts_sd.rows()
        rows_in = all_rows[: s.prompts]
        prompts = {p["prompt_id"]: p for p in rows_in}
        ids = set(prompts)
        scorers = ctx.models.bound_scorers(list(cfg.score), reachable(model), "score")
        grid = []
        for t in s.temperatures:
            params = cfg.generate.params(n=s.n, temperature=t, seed=cfg.generate.seed + iteration)
            part = StageDir(sd.path / f"t{t:g}", "search_generate", {"params": params.to_dict()}, sd.inputs)  # shards only
            samples = generate_sharded(ctx, part, rows_in, model, params, cfg.generate.shard_size, iteration,
                                       f"iter {iteration} search T={t:g}")
            scored = score_samples(scorers, ctx.task, prompts, samples, f"iter {iteration} search T={t:g} score", ctx.progress)
            if not graded(scored):
                raise ValueError("search: the balance score needs gold verdicts (`correct`) on the search slice: add the gold "
                                 "scorer, and train prompts with answers")
            if s.target_size:  # a per-prompt cap grown to the search's own target, in place of select's caps
                cap = {"target_size": s.target_size, "max_per_prompt": None}
            elif cfg.select.target_size is not None:  # select's caps, its target scaled to the slice's samples
                share = len(rows_in) * s.n / max(len(all_rows) * cfg.generate.n, 1)
                cap = {"target_size": max(1, round(cfg.select.target_size * share))}
            else:  # select's own caps
                cap = {}
            for tau in s.thresholds:
                sel = cfg.select.model_copy(update={"min_score": ScoreThreshold(column=s.column, tau=tau, strict=True), **cap})
                kept, counts = select_samples(scored, sel, cfg.seed + iteration)
                grid.append({"temperature": t, "tau": tau, "balance_score": round(balance_score(kept, ids, s.n_star), 4),
                             "kept": len(kept), "kept_correct": sum(r.get("correct") is True for r in kept),
                             "prompts_kept": counts["prompts_kept"], "samples": len(scored),
                             "correct": sum(r.get("correct") is True for r in scored)})
        best = max(grid, key=lambda g: g["balance_score"])  # max keeps the first of equal ones
        chosen = chosen_settings(best["temperature"], best["tau"], s.column)
        counts = {"prompts": len(rows_in), "grid": len(grid), "temperature": best["temperature"], "tau": best["tau"],
                  "balance_score": best["balance_score"]}
        return grid, counts, {"chosen": chosen}

    return run_stage(ctx, iteration, sd, work)
