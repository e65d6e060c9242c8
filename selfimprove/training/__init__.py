"""Training methods (`registry.TRAINERS`): SFT now; each subclasses `base.Trainer` and shares `common`."""
