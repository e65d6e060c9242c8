"""Multi-turn SFT rows: a completion of attempt, instruction, revision is trained on both of the model's turns and
never on the instruction (checked on the labels TRL builds, on the tiny model), and the trajectory builder emits such
rows with `loss_on: both_turns`."""

import pytest

from selfimprove.training.turn_masks import is_multi_turn, tokenize_turns

PROMPT = [{"role": "user", "content": "What is 2 + 3?"}]
TURNS = [{"role": "assistant", "content": "The answer is 6."}, {"role": "user", "content": "Check it and correct it."},
         {"role": "assistant", "content": "The answer is 5."}]


@pytest.fixture(scope="module")
def tok(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def test_the_mask_covers_each_assistant_turn_and_nothing_else(tok):
    out = tokenize_turns(tok, PROMPT, TURNS)
    ids, mask = out["input_ids"], out["completion_mask"]
    assert tok.decode(ids) == tok.apply_chat_template(PROMPT + TURNS, tokenize=False)
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained == "The answer is 6.<|im_end|>\nThe answer is 5.<|im_end|>\n"
    untrained = tok.decode([i for i, m in zip(ids, mask) if not m])
    assert "Check it and correct it." in untrained and "What is 2 + 3?" in untrained and "answer is" not in untrained
    assert not is_multi_turn([{"completion": TURNS[:1]}]) and is_multi_turn([{"completion": TURNS}])


def test_trl_trains_on_both_turns_only(tiny_model_path, tok, tmp_path):
    """The dataset the weighted SFT trainer gets: multi-turn rows tokenized with their mask; TRL's labels are -100
    exactly off the assistant turns, a one-turn row in the same set is trained on its completion, weights kept."""
    import torch
    from transformers import AutoModelForCausalLM

    from selfimprove.config import SFTTrainConfig
    from selfimprove.training.sft import sft_config, sft_dataset, weighted_sft_trainer_class

    rows = [{"prompt": PROMPT, "completion": TURNS, "weight": 0.5},
            {"prompt": PROMPT + TURNS[:2], "completion": TURNS[2:], "weight": 1.0}]
    cfg = SFTTrainConfig(epochs=1, batch_size=2, device="cpu")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    trainer = weighted_sft_trainer_class()(model=model, args=sft_config(cfg, tmp_path, on_cpu=True, bf16=False, total_steps=1),
                                           train_dataset=sft_dataset(rows, tok), processing_class=tok)
    ds = trainer.train_dataset
    labelled = [tok.decode([t for t in r["labels"] if t != -100]) for r in ds]
    assert labelled == ["The answer is 6.<|im_end|>\nThe answer is 5.<|im_end|>\n", "The answer is 5.<|im_end|>\n"]
    assert [r["weight"] for r in ds] == [0.5, 1.0]
    trainer.train()  # the labels train (a finite loss through the weighted path)
    assert trainer.state.log_history and all(torch.isfinite(torch.tensor(h.get("train_loss", 0.0))) for h in trainer.state.log_history)


def test_trajectories_with_the_loss_on_both_turns():
    """A right -> right trajectory trains both turns; a wrong attempt stays in the prompt (never trained on)."""
    from selfimprove.builders.trajectories import CorrectionTrajectories

    def pair(pid, first_right):
        return [{"prompt_id": pid, "sample_id": f"{pid}/0", "turn": 1, "completion": "5" if first_right else "6", "model_ref": "m",
                 "parent_id": None, "correct": first_right, "revise_instruction": None},
                {"prompt_id": pid, "sample_id": f"{pid}/0/r0", "turn": 2, "completion": "5", "model_ref": "m", "parent_id": f"{pid}/0",
                 "correct": True, "revise_instruction": "Correct it."}]

    prompts = {"p": {"messages": PROMPT}, "q": {"messages": PROMPT}}
    both, _ = CorrectionTrajectories({"loss_on": "both_turns"}).build(pair("p", True) + pair("q", False), prompts)
    last, _ = CorrectionTrajectories().build(pair("p", True) + pair("q", False), prompts)
    right, wrong = both
    assert right["trajectory"] == "right_to_right" and right["prompt"] == PROMPT
    assert [m["role"] for m in right["completion"]] == ["assistant", "user", "assistant"]
    assert wrong["trajectory"] == "wrong_to_right" and wrong["prompt"][-2]["content"] == "6" and len(wrong["completion"]) == 1
    assert last[0]["prompt"] == PROMPT + right["completion"][:2] and last[0]["completion"] == right["completion"][2:]


def test_a_template_that_renders_a_turn_differently_mid_conversation_is_refused(tok):
    """Some chat templates (Qwen3's) add or drop text on the last assistant turn only: the turn's tokens inside the
    conversation cannot be found, so the row is refused rather than silently left untrained."""
    import copy

    odd = copy.copy(tok)
    odd.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and loop.last %}<think></think>"
                         "{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(ValueError, match="renders assistant turn 1 of the completion differently"):
        tokenize_turns(odd, PROMPT, TURNS)
