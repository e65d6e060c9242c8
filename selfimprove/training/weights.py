"""Per-row weights through TRL's trainers, which have none (TRL 1.16): keep the `weight` column through dataset
preparation (signature columns) and the collator, and hand it to the loss as a tensor of shape (batch,)."""

from __future__ import annotations

WEIGHT = "weight"


class KeepWeight:
    """Wraps a TRL collator: collates as it does, then adds the examples' weights as a float32 tensor (TRL's
    collators drop every key they do not know)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        import torch

        if any(WEIGHT not in ex for ex in examples):
            raise KeyError("a training example reached the collator without its `weight` (did the trainer's dataset preparation drop it?)")
        weights = [float(ex.pop(WEIGHT)) for ex in examples]
        batch = self.collator(examples)
        batch[WEIGHT] = torch.tensor(weights, dtype=torch.float32)
        return batch


def keep_weight_column(trainer) -> None:
    """Make `trainer` (already built) carry the weight column: signature columns and collator."""
    trainer._set_signature_columns_if_needed()
    if WEIGHT not in trainer._signature_columns:
        trainer._signature_columns = list(trainer._signature_columns) + [WEIGHT]
    if not isinstance(trainer.data_collator, KeepWeight):
        trainer.data_collator = KeepWeight(trainer.data_collator)
