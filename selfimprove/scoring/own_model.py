"""Loading the model a scorer runs itself (a reward model, a process reward model): resolved like every model
reference, float32 on CPU (bf16 is far slower there), a pad token, evaluation mode; a load failure names the model."""

from __future__ import annotations


def load_own_model(reference: str, device: str, auto_class: str, what: str):
    """(model, tokenizer, device) for `reference` as a transformers `auto_class` (AutoModelForCausalLM, ...)."""
    import torch
    import transformers

    from ..devices import pick_device
    from ..errors import ModelError
    from ..models import resolve_model

    path = resolve_model(reference)
    dev = pick_device(device)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(path)
        model = getattr(transformers, auto_class).from_pretrained(path, dtype=torch.float32 if dev.type == "cpu" else torch.bfloat16)
    except OSError as e:
        raise ModelError(f"cannot load {what} {path}: {e}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model.to(dev).eval(), tok, dev
