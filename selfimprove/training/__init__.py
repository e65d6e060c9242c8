"""Training methods (`registry.TRAINERS`: sft, dpo, grpo, and plug-ins); each subclasses `base.Trainer` and shares
`common`."""
