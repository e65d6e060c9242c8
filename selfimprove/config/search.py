"""B-STaR's per-iteration configuration search (`search:`): before an iteration samples its train prompts, sample a
slice of them at each temperature of a grid, sweep a reward threshold over the scored samples, and run the
iteration with the (temperature, threshold) whose kept set has the highest balance score."""

from __future__ import annotations

from pydantic import Field, field_validator

from .base import Strict


class SearchConfig(Strict):
    prompts: int = Field(32, gt=0, description="The first N train prompts are the search slice (B-STaR: ~1k queries).")
    n: int = Field(16, gt=0, description="Samples per prompt at each temperature (B-STaR: 64).")
    temperatures: list[float] = Field(default_factory=lambda: [0.5, 0.7, 0.9, 1.1], description="The temperature grid "
                                                                                               "(B-STaR: 0.50 to 1.20 by 0.05).")
    column: str = Field("correct", description="The per-sample score thresholded: a scorer's numeric column, or `correct` "
                                               "(1 right, 0 wrong: the outcome-level score where no process reward model exists).")
    thresholds: list[float] = Field(default_factory=lambda: [-0.5, 0.5], description="Reward thresholds tau swept: a sample "
                                                                                     "is kept when its score is above tau "
                                                                                     "(B-STaR: -1.0 to 1.0 by 0.01).")
    target_size: int | None = Field(None, gt=0, description="Grow a per-prompt cap until the slice's kept set has this many "
                                                            "samples before scoring it (B-STaR's valid_sample_size); unset, the "
                                                            "select stage's own caps apply.")
    n_star: int = Field(4, gt=0, description="n* of the balance score: unique correct samples a prompt needs for full credit "
                                             "(B-STaR's code: 8, with 64 samples).")

    @field_validator("temperatures", "thresholds")
    @classmethod
    def _not_empty(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one value")
        return v
