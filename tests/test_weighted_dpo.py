"""Weighted DPO with the per-sequence NLL term: all weights 1 and alpha 0 give TRL's own sigmoid loss on the same
batch; the NLL term equals a hand computation on the tiny model; weight-0 pairs add no gradient and doubling a
pair's weight doubles its gradient; the trainer runs end to end with LoRA (reference = adapter switched off)."""

import pytest
import torch

from selfimprove.config import DPOTrainConfig
from selfimprove.training.dpo import DPOTrainer, dpo_config, weighted_dpo_trainer_class

PAIRS = [
    ("What is 2 + 3?", "The answer is 5.", "The answer is 7."),
    ("What is 10 + 7?", "10 + 7 = 17. The answer is 17.", "I think it is 3"),
    ("What is 4 + 4?", "8", "The answer is 44, because 4 and 4 side by side."),
    ("What is 30 + 12?", "30 + 12 is 42.", "12"),
]


def rows(weights):
    return [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}], "weight": float(w)} for (q, c, r), w in zip(PAIRS, weights)]


def build(tiny_model_path, tmp_path, weights=(1, 1, 1, 1), weighted=True, nll_alpha=0.0, precompute=False):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer as TRLDPOTrainer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    with torch.no_grad():  # a reference that differs from the policy, so the log-ratios are not all zero
        for p in ref.parameters():
            p.add_(0.01 * torch.randn_like(p))
    cfg = DPOTrainConfig(batch_size=2, epochs=1, learning_rate=1e-3, lora=None, max_length=64, beta=0.5, nll_alpha=nll_alpha,
                         precompute_ref=precompute)
    args = dpo_config(cfg, tmp_path, on_cpu=True, bf16=False, total_steps=2)
    data = rows(weights)
    if not weighted:
        data = [{k: v for k, v in r.items() if k != "weight"} for r in data]
    kwargs = dict(model=model, ref_model=ref, args=args, train_dataset=datasets.Dataset.from_list(data), processing_class=tok)
    return weighted_dpo_trainer_class()(nll_alpha=nll_alpha, **kwargs) if weighted else TRLDPOTrainer(**kwargs)


def batch_of(trainer):
    return next(iter(trainer.get_train_dataloader()))


def loss_and_grads(trainer, batch):
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_weights_one_alpha_zero_equal_trls_sigmoid_loss(tiny_model_path, tmp_path):
    ours, theirs = build(tiny_model_path, tmp_path / "a"), build(tiny_model_path, tmp_path / "b", weighted=False)
    b_ours, b_theirs = batch_of(ours), batch_of(theirs)
    assert torch.equal(b_ours["weight"], torch.ones(2)) and torch.equal(b_ours["input_ids"], b_theirs["input_ids"])
    la, ga = loss_and_grads(ours, b_ours)
    lb, gb = loss_and_grads(theirs, b_theirs)
    assert la.item() > 0 and torch.equal(la, lb)
    assert all(torch.equal(ga[n], gb[n]) for n in gb)


def test_nll_term_matches_a_hand_computation(tiny_model_path, tmp_path):
    t0, t1 = build(tiny_model_path, tmp_path / "a"), build(tiny_model_path, tmp_path / "b", nll_alpha=1.0)
    batch = batch_of(t0)
    weight = torch.tensor([2.0, 0.5])
    batch["weight"] = weight
    with torch.no_grad():
        diff = t1.compute_loss(t1.model, dict(batch)) - t0.compute_loss(t0.model, dict(batch))
        # by hand: the chosen half of the batch, log p of each completion token given the tokens before it
        half = batch["input_ids"].size(0) // 2
        ids, attn, cmask = batch["input_ids"][:half], batch["attention_mask"][:half], batch["completion_mask"][:half]
        logits = t0.model(input_ids=ids, attention_mask=attn).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        mask = cmask[:, 1:].float()
        nll = -(logp * mask).sum(1) / mask.sum(1)
    expected = (weight * nll).mean()
    assert torch.allclose(diff, expected, atol=1e-5), (diff, expected)


def test_weight_zero_pairs_add_no_gradient_and_doubling_doubles(tiny_model_path, tmp_path):
    t = build(tiny_model_path, tmp_path, nll_alpha=1.0)
    base = batch_of(t)

    def grads(w):
        return loss_and_grads(t, dict(base, weight=torch.tensor(w)))[1]

    g00, g11, g10, g01, g21 = (grads(w) for w in ([0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [2.0, 1.0]))
    assert all(float(v.abs().max()) == 0.0 for v in g00.values())
    for n in g11:
        assert torch.allclose(g10[n] + g01[n], g11[n], atol=1e-6)
        assert torch.allclose(g21[n], g11[n] + g10[n], atol=1e-6)


def test_dpo_trainer_end_to_end_with_lora(tiny_model_path, tmp_path):
    cfg = DPOTrainConfig(batch_size=2, epochs=1, learning_rate=1e-3, max_length=64, nll_alpha=1.0, device="cpu")
    stats = DPOTrainer(cfg).train(tiny_model_path, rows([1.0, 0.5, 0.25, 1.0]), tmp_path)
    assert stats["steps"] == 2 and (tmp_path / "model" / "config.json").is_file() and (tmp_path / "adapter").is_dir()
    assert "rewards/accuracies" in stats and "nll/chosen" in stats
    with pytest.raises(ValueError, match="row 1 has -1.0"):
        DPOTrainer(cfg).train(tiny_model_path, rows([1.0, -1.0, 1.0, 1.0]), tmp_path / "bad")


def test_weights_travel_through_the_dataloader_with_precomputed_reference(tiny_model_path, tmp_path):
    """Weights other than 1 reach the loss from the dataset (shuffled batches: each row keeps its own), and the
    precomputed reference log-probs give the same loss as the reference computed on the fly."""
    weights = (0.25, 2.0, 1.0, 0.5)
    live = build(tiny_model_path, tmp_path / "a", weights)
    pre = build(tiny_model_path, tmp_path / "b", weights, precompute=True)
    by_prompt = {q: w for (q, _, _), w in zip(PAIRS, weights)}
    for t in (live, pre):
        for batch in t.get_train_dataloader():
            texts = t.processing_class.batch_decode(batch["input_ids"][: batch["weight"].numel()])
            got = [next(w for q, w in by_prompt.items() if q in text) for text in texts]
            assert batch["weight"].tolist() == got
    b_live, b_pre = batch_of(live), batch_of(pre)
    assert "ref_chosen_logps" in b_pre and torch.equal(b_live["input_ids"], b_pre["input_ids"])
    with torch.no_grad():
        assert torch.allclose(live.compute_loss(live.model, dict(b_live)), pre.compute_loss(pre.model, dict(b_pre)), atol=1e-5)


def test_run_references_resolve_inside_a_run_only(tmp_path):
    """`train.reference`: base / previous / iter_<j> are models of the run, resolved by the train stage (and hashed by
    their fingerprints); outside a run the trainer refuses them before loading anything."""
    from selfimprove.errors import ConfigError, StageError
    from selfimprove.models import ModelRef
    from selfimprove.pipeline.stages.train import run_reference

    class Ctx:
        def base_model(self):
            return ModelRef("base", "/m/base", "fp-base")

        def iteration_model(self, k):
            return ModelRef(f"iter_{k}", f"/m/{k}", f"fp-{k}")

    assert run_reference(Ctx(), 3, "base").ref == "base" and run_reference(Ctx(), 3, "previous").ref == "iter_2"
    assert run_reference(Ctx(), 3, "iter_1").path == "/m/1" and run_reference(Ctx(), 3, "start") is None
    assert run_reference(Ctx(), 3, "/some/folder") is None
    with pytest.raises(StageError, match="iter_3 does not exist yet in iteration 3"):
        run_reference(Ctx(), 3, "iter_3")
    with pytest.raises(ConfigError, match="names a model of a pipeline run"):
        DPOTrainer(DPOTrainConfig(reference="previous")).train("/nowhere", rows([1, 1, 1, 1]), tmp_path)
    with pytest.raises(ConfigError, match="is not iter_<k>"):
        DPOTrainer(DPOTrainConfig(reference="iter_x"))
