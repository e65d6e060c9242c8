"""Weighted SFT (TRL's SFTTrainer with per-row weights): all weights 1 gives TRL's own loss on the same batch
(with gradient accumulation too), a weight-0 row contributes no gradient, doubling a row's weight doubles its
gradient, and a whole training run with weight-0 rows only leaves the weights where they were."""

import math

import pytest
import torch

from selfimprove.config import SFTTrainConfig
from selfimprove.training.sft import sft_config, weighted_sft_trainer_class

ROWS = [
    ("What is 2 + 3?", "The answer is 5."),
    ("What is 10 + 7?", "10 + 7 = 17. The answer is 17."),
    ("What is 4 + 4?", "8"),
    ("What is 30 + 12?", "30 + 12 is 42, so the answer is 42."),
]


def rows(weights):
    return [{"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": a}], "weight": float(w)}
            for (q, a), w in zip(ROWS, weights)]


def build(tiny_model_path, tmp_path, weights, weighted=True, accumulation=1, lr=1e-3):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    cfg = SFTTrainConfig(batch_size=2, gradient_accumulation_steps=accumulation, epochs=1, learning_rate=lr, lora=None, max_length=64)
    args = sft_config(cfg, tmp_path, on_cpu=True, bf16=False, total_steps=4)
    data = rows(weights)
    if not weighted:
        data = [{k: v for k, v in r.items() if k != "weight"} for r in data]
    cls = weighted_sft_trainer_class() if weighted else SFTTrainer
    return cls(model=model, args=args, train_dataset=datasets.Dataset.from_list(data), processing_class=tok)


def batch_of(trainer):
    return next(iter(trainer.get_train_dataloader()))


def loss_and_grads(trainer, batch, num_items=None):
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_weights_one_equal_trls_own_loss(tiny_model_path, tmp_path):
    ours = build(tiny_model_path, tmp_path / "a", [1, 1, 1, 1])
    theirs = build(tiny_model_path, tmp_path / "b", [1, 1, 1, 1], weighted=False)
    b_ours, b_theirs = batch_of(ours), batch_of(theirs)
    assert torch.equal(b_ours["weight"], torch.ones(2))
    assert torch.equal(b_ours["input_ids"], b_theirs["input_ids"])
    for num_items in (None, int((b_theirs["labels"][:, 1:] != -100).sum()) * 2):  # plain, and as under gradient accumulation
        la, ga = loss_and_grads(ours, b_ours, num_items)
        lb, gb = loss_and_grads(theirs, b_theirs, num_items)
        assert torch.equal(la, lb)
        assert all(torch.equal(ga[n], gb[n]) for n in gb)


def test_weight_zero_rows_add_no_gradient_and_doubling_doubles(tiny_model_path, tmp_path):
    t = build(tiny_model_path, tmp_path, [1, 1, 1, 1])
    base = batch_of(t)

    def grads(w):
        return loss_and_grads(t, dict(base, weight=torch.tensor(w, dtype=torch.float32)))[1]

    g11, g10, g01, g21 = grads([1.0, 1.0]), grads([1.0, 0.0]), grads([0.0, 1.0]), grads([2.0, 1.0])
    g00 = grads([0.0, 0.0])
    assert all(float(v.abs().max()) == 0.0 for v in g00.values())  # weight 0: no gradient at all
    for n in g11:
        assert torch.allclose(g10[n] + g01[n], g11[n], atol=1e-6)  # rows add up
        assert torch.allclose(g21[n], g11[n] + g10[n], atol=1e-6)  # row 0 at weight 2 counts twice


def test_training_on_weight_zero_rows_changes_no_parameter(tiny_model_path, tmp_path):
    t = build(tiny_model_path, tmp_path, [0, 0, 0, 0], lr=1e-2)
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.train()
    assert all(torch.equal(before[n], p) for n, p in t.model.named_parameters())
    assert t.state.global_step == 2
    t2 = build(tiny_model_path, tmp_path / "c", [1, 1, 1, 1], lr=1e-2)
    t2.train()
    assert any(not torch.equal(before[n], p) for n, p in t2.model.named_parameters())


def test_gradient_accumulation_weights_one_match_trl(tiny_model_path, tmp_path):
    """Two steps of 2 x 2 rows with accumulation: the same final weights as TRL's own trainer."""
    a = build(tiny_model_path, tmp_path / "a", [1, 1, 1, 1], accumulation=2)
    b = build(tiny_model_path, tmp_path / "b", [1, 1, 1, 1], weighted=False, accumulation=2)
    ra, rb = a.train(), b.train()
    assert math.isclose(ra.training_loss, rb.training_loss, rel_tol=0, abs_tol=0)
    pb = dict(b.model.named_parameters())
    assert all(torch.equal(p, pb[n]) for n, p in a.model.named_parameters())


def test_bad_weights_are_refused(tiny_model_path, tmp_path):
    from selfimprove.training.sft import train_sft

    bad = rows([1, 1, 1, 1])
    bad[2]["weight"] = -1.0
    with pytest.raises(ValueError, match="row 2 has -1.0"):
        train_sft(tiny_model_path, bad, tmp_path, SFTTrainConfig(lora=None), "cpu")
