"""GRPO on TRL's GRPOTrainer with selfimprove scorers as reward functions (`train.method: grpo`).

The trainer samples `num_generations` completions per train prompt itself, so an iteration has no generate,
score or select stage: rows are the train prompts. Each `train.rewards` entry is a scorer column
(`scoring.rewards.as_reward_func`), summed with its weight: `gold: correct` (verifier; code tests run in the
sandbox), `majority_vote: is_majority` (TTRL's label-free pseudo-label reward; it sees every sample of a
group, gathered across ranks), a judge's score, P(True), ... A model-based reward scorer judges with the
iteration's starting model (`judge: policy`) or the model it names, not with the weights being trained.

Per logged step the train stage records TRL's reward mean and std, the fraction of groups whose rewards are all
equal (`frac_reward_zero_std`: no gradient from them), and, where a majority vote rewards and the prompts have
gold answers, `pseudo_label_accuracy`: how often the majority answer is right. That audit never feeds a reward;
`stop_below_label_accuracy` stops training when it falls (majority rewards can lock onto a consistent wrong answer):
the rule `{metric: train.pseudo_label_accuracy, below: x, patience: n}` of `control.stop_if`. Each step also logs the
groups' label-free health (answer entropy, distinct answers, all agree, vote margin), which need no gold.

With `train.turns` a rollout is two turns, attempt -> correction instruction -> revision (SCoRe; `two_turn.py`):
each reward scores both turns and the KL is weighted per turn.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import ConfigError
from .base import Monitor, Trainer
from .common import fit_and_save, load_model_and_tokenizer, peft_config, progress_callback, require_rows, total_steps, training_setup, trl_args
from .two_turn import TURN_MONITORS
from .vllm_rollouts import ROLLOUT_MONITORS, check_vllm_rollouts, engine_options, sync_by_reload, trl_vllm_args

# columns a reward batch has: TRL's completions, the prompt rows' ids (see scoring.rewards.trl_batch)
REWARD_COLUMNS = ("prompt_id", "sample_id", "completion", "answer", "num_tokens", "finish_reason")
HEALTH_KEYS = ("answer_entropy", "distinct_answers", "all_agree", "vote_margin")  # control.health, per logged step
STEP_MONITORS = ("reward", "reward_std", "frac_reward_zero_std", "pseudo_label_accuracy", "reward_accuracy", "majority_abstain", "kl",
                 "completions/mean_length", "completions/clipped_ratio", "loss", "step_time", "dev/accuracy") + HEALTH_KEYS + TURN_MONITORS + ROLLOUT_MONITORS


def grpo_config(cfg, out_dir: Path, *, on_cpu: bool, bf16: bool, total_steps: int):
    """TRL's `GRPOConfig` for one training stage (see `common.trl_args`; GRPO's own defaults are bf16 and gradient
    checkpointing). Extra dataset columns are kept (`prompt_id`, `reference` reach the reward functions)."""
    from trl import GRPOConfig

    semantics = dict(bf16=bf16, fp16=False, use_cpu=on_cpu, num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                     temperature=cfg.temperature, top_p=cfg.top_p, beta=max(cfg.kl_per_turn()), epsilon=cfg.epsilon, loss_type=cfg.loss_type,
                     scale_rewards=cfg.scale_rewards, remove_unused_columns=False, **trl_vllm_args(cfg.vllm))
    extra = {"max_steps": cfg.max_steps} if cfg.max_steps else {}
    return trl_args(GRPOConfig, cfg, out_dir, semantics, total_steps, reward_weights=[r.weight for r in cfg.rewards], **extra)


def trl_trainer_class(trained_per_group: int | None):
    """TRL's GRPOTrainer, or with `trained_per_group` a subclass whose loss covers only the first k completions of each
    group: their rewards alone are set (`as_reward_func(trained=...)`), so TRL's group baseline and advantages cover
    them only; this drops the others' tokens from the loss and from its normaliser too (TTRL: vote over 64, train 32)."""
    from trl import GRPOTrainer as TRLGRPOTrainer

    if trained_per_group is None:
        return TRLGRPOTrainer
    import logging

    import torch

    logging.getLogger("trl.trainer.grpo_trainer").addFilter(_untrained_rows_are_not_news)

    class PoolGRPOTrainer(TRLGRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            if not self.model.training:
                return out
            mask = out["completion_mask"]
            n = mask.shape[0]
            start = self.accelerator.process_index * n  # groups are contiguous in the gathered batch, ranks in order
            keep = (torch.arange(start, start + n, device=mask.device) % self.num_generations) < trained_per_group
            out["completion_mask"] = mask * keep.unsqueeze(1).to(mask.dtype)
            loss_mask = out["completion_mask"] if out.get("tool_mask") is None else out["completion_mask"] * out["tool_mask"]
            out["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
            return out

    return PoolGRPOTrainer


def _untrained_rows_are_not_news(record) -> bool:
    """TRL warns, with the prompt and the completion, for every row no reward scored: with `trained_per_group` that is
    every untrained completion of every batch, by design."""
    return not str(record.msg).startswith("All reward functions returned None")


def group_audit(task, audit_labels: bool):
    """`on_result` hook of the first reward: per scored batch, the label-free health of its groups (answer entropy,
    distinct answers, all agree, vote margin: `control.health`, over a majority vote of each group), and with
    `audit_labels` (a majority-vote reward) `pseudo_label_accuracy`, the share of groups (with a gold answer and a
    majority answer) whose majority answer is right, `majority_abstain`, the share without one, and `reward_accuracy`
    (TTRL's), the share of completions whose majority reward equals the reward gold would give (over every voted
    completion: with `trained_per_group` the untrained ones too, samples of the same policy; a cut-off one has no answer,
    so both rewards are 0 and it counts as agreeing, as in TTRL). Logged per step; never a reward."""
    from ..control.health import health
    from ..scoring.consistency import MajorityVote

    voter = MajorityVote(task, {"count_unfinished": False}) if getattr(task, "outcome_column", None) is None else None

    def audit(prompt_rows: dict, samples: list[dict], result, log_metric) -> None:
        if log_metric is None:
            return
        cols = result.columns if "cluster" in result.columns else (voter.score(prompt_rows, samples).columns if voter else {})
        rows = [dict(s, **{k: v[i] for k, v in cols.items()}) for i, s in enumerate(samples)]
        for key, value in health(rows).items():
            if key in HEALTH_KEYS:
                log_metric(key, value)
        if not audit_labels:
            return
        majority: dict[str, str | None] = {}
        for s, ans in zip(samples, result.columns["majority_answer"]):
            majority.setdefault(s["prompt_id"], ans)
        gold = {pid: task.normalize_reference(str(p.get("reference") or "")) for pid, p in prompt_rows.items() if p.get("reference")}
        judged = [pid for pid in majority if pid in gold and majority[pid] is not None]
        if majority:
            log_metric("majority_abstain", sum(a is None for a in majority.values()) / len(majority))
        if judged:
            verdicts = task.check([gold[p] for p in judged], [majority[p] for p in judged])
            log_metric("pseudo_label_accuracy", sum(bool(ok) for ok, _ in verdicts) / len(judged))
        labelled = [(s, bool(v)) for s, v in zip(samples, result.columns.get("is_majority", [])) if s["prompt_id"] in gold]
        if labelled:  # TTRL's reward accuracy: the majority reward equals the reward gold would give
            right = task.check([gold[s["prompt_id"]] for s, _ in labelled], [s["answer"] for s, _ in labelled])
            log_metric("reward_accuracy", sum((v == bool(ok)) for (_, v), (ok, _) in zip(labelled, right)) / len(labelled))

    return audit


class GRPOTrainer(Trainer):
    """`train.method: grpo`: rows are the train prompts (`messages`, `prompt_id`, `reference` for monitors only)."""

    name = "grpo"
    reads = ("prompt_id", "messages")
    stages = ("train",)
    supports_control = True
    monitors = (Monitor("reward", "trend"), Monitor("frac_reward_zero_std", "mean", "zero-spread groups"),
                Monitor("pseudo_label_accuracy", "trend", "pseudo-label accuracy per step"),
                Monitor("reward_accuracy", "trend", "reward accuracy (majority reward = gold reward) per step"))

    def monitor_report(self, stats: dict) -> list[str]:
        """The declared monitors, then, with several rewards, each reward's own trend (`gold:correct 0.250 -> 0.500`):
        a summed reward can rise while the part that matters falls."""
        out = super().monitor_report(stats)
        steps = stats.get("per_step") or []
        keys = sorted({k for s in steps for k in s if k.startswith("rewards/") and k.endswith("/mean")})
        if len(keys) > 1:
            out += [d for k in keys if (d := Monitor(k, "trend", k[len("rewards/"):-len("/mean")]).describe(stats))]
        turns = [Monitor("turn1_reward", "trend", "turn-1 reward"), Monitor("turn2_reward", "trend", "turn-2 reward"),
                 Monitor("i_to_c", "trend", "wrong -> right"), Monitor("c_to_i", "trend", "right -> wrong"),
                 Monitor("kl_turn1", "trend", "turn-1 KL")]
        return out + [d for m in turns if (d := m.describe(stats))]

    def step_rules(self) -> list:
        """`stop_below_label_accuracy` as the stop rule it is."""
        from ..config.control import StopRule

        if self.cfg.stop_below_label_accuracy is None:
            return []
        return [StopRule(metric="train.pseudo_label_accuracy", below=self.cfg.stop_below_label_accuracy, patience=self.cfg.stop_patience)]

    def check(self, task) -> None:
        """Reward scorers exist, their options are valid, and they read only what a reward batch has; vLLM rollouts can
        run here."""
        self._scorers(task)
        if self.cfg.vllm is not None:
            check_vllm_rollouts(self.cfg.vllm, training_setup(self.cfg.device)[2])

    def _scorers(self, task) -> list:
        from ..scoring import make_scorer

        if self.cfg.turns is not None:
            task.prompts.require(self.cfg.turns.template, "train.turns.template")
            task.prompts.require(self.cfg.turns.verify_template, "train.turns.verify_template")
        out = []
        for i, r in enumerate(self.cfg.rewards):
            where = f"train.rewards[{i}]"
            sc = make_scorer(r.scorer, task, r.options, where, name_key="scorer")
            missing = [c for c in sc.columns().reads if c not in REWARD_COLUMNS]
            if missing:
                raise ConfigError(f"{where}: scorer {sc.name} reads {missing}, which GRPO's completions do not have "
                                  f"(they have {list(REWARD_COLUMNS)})")
            if r.column is not None and r.column not in sc.columns().writes:
                raise ConfigError(f"{where}.column: scorer {sc.name} writes {list(sc.columns().writes)}, not {r.column!r}")
            out.append(sc)
        if self.cfg.stop_below_label_accuracy is not None and not any("majority_answer" in sc.columns().writes for sc in out):
            raise ConfigError("train.stop_below_label_accuracy audits a majority-vote reward's pseudo-labels, but no train.rewards "
                              "entry is a majority vote")
        return out

    def train(self, model_path, rows: list[dict], out_dir: Path, progress=None) -> dict:
        import datasets
        import torch

        from ..models import model_ref
        from ..scoring.judge_base import Models, bind_scorers
        from ..scoring.rewards import as_reward_func
        from .sft import train_sft
        from .two_turn import TurnReward, TwoTurnRollout, two_turn_trainer_class

        cfg = self.cfg
        if self.task is None:
            raise RuntimeError("GRPO needs the task: call attach(task, ...) before train()")
        require_rows(rows, cfg.min_rows)
        scorers = self._scorers(self.task)
        models = self.models or Models(cache_path=out_dir / "reward_cache.sqlite", finetune=train_sft)
        bind_scorers(scorers, models, self.policy if self.policy is not None else model_ref(str(model_path)))
        dev, dtype, on_cpu = training_setup(cfg.device)
        steps = cfg.max_steps or total_steps(len(rows) * cfg.num_generations, cfg)  # batches count completions
        args = grpo_config(cfg, out_dir, on_cpu=on_cpu, bf16=dtype == torch.bfloat16, total_steps=steps)  # before the model (ZeRO-3)
        model, tok = load_model_and_tokenizer(model_path, torch.float32 if on_cpu else dtype)
        funcs = []
        voting = [("majority_answer" in sc.columns().writes) for sc in scorers]
        audited = voting.index(True) if any(voting) else 0  # one reward carries the audit: the vote if there is one
        trained = (cfg.num_generations, cfg.trained_per_group) if cfg.trained_per_group else None
        for i, (r, sc) in enumerate(zip(cfg.rewards, scorers)):
            audit = group_audit(self.task, voting[i]) if i == audited else None
            func = as_reward_func(sc, r.column, eos_token_id=eos_ids(model, tok), on_result=audit, trained=trained)
            if cfg.turns is not None:
                func = TurnReward(func, cfg.turns.first, cfg.turns.second, cfg.turns.shaping, monitor=i == 0)
            funcs.append(func)
        ds = datasets.Dataset.from_list([{"prompt": list(r["messages"]), "prompt_id": str(r["prompt_id"]),
                                          "reference": str(r.get("reference") or "")} for r in rows])
        callbacks = [progress_callback(progress)]
        cls, extra = trl_trainer_class(cfg.trained_per_group), {}
        if cfg.turns is not None:
            cls = two_turn_trainer_class(cls, cfg.kl_per_turn())
            verify = self.task.prompts.render(cfg.turns.verify_template) if cfg.turns.verify_template else None
            extra["rollout_func"] = TwoTurnRollout(self.task.prompts.render(cfg.turns.template), verify)
            os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL: tests pin what we use
        check_vllm_rollouts(cfg.vllm, on_cpu)
        with engine_options(cfg.vllm, on_cpu):
            trainer = cls(model=model, reward_funcs=funcs, args=args, train_dataset=ds, processing_class=tok,
                          peft_config=peft_config(cfg.lora), callbacks=callbacks, **extra)
        if on_cpu:
            sync_by_reload(trainer)
        control = self.control
        if self.step_rules():
            from .control import TrainingControl

            control = control or TrainingControl(self.task)
            control = dataclasses.replace(control, rules=list(control.rules) + self.step_rules())
        return fit_and_save(trainer, tok, out_dir, lora=cfg.lora is not None, rows=len(rows), dev=dev, dtype=dtype, control=control,
                            keep_logs=lambda k: k in STEP_MONITORS or (k.startswith("rewards/") and k.endswith("/mean")))


def eos_ids(model, tok) -> set[int]:
    """Every id TRL stops a completion at: the tokenizer's EOS and the generation config's (one or a list)."""
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen) if isinstance(gen, (list, tuple)) else ({gen} if gen is not None else set())
    return ids

