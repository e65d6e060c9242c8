"""SFT row builder: prompt messages + the kept completion as the assistant turn."""

from __future__ import annotations


def sft_rows(samples: list[dict], prompts: dict[str, dict]) -> list[dict]:
    """Train-set rows: `prompt` (chat list), `completion` (assistant turn), `messages` (both), `weight`, lineage."""
    rows = []
    for s in samples:
        prompt = list(prompts[s["prompt_id"]]["messages"])
        answer = [{"role": "assistant", "content": s["completion"]}]
        rows.append(
            {
                "prompt_id": s["prompt_id"],
                "sample_id": s["sample_id"],
                "prompt": prompt,
                "completion": answer,
                "messages": prompt + answer,
                "weight": float(s.get("weight", 1.0) or 1.0),
                "model_ref": s["model_ref"],
            }
        )
    return rows
