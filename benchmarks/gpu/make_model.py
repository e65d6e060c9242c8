"""Random-initialised model of SmolLM2-135M's shape with its real tokenizer (the real weights do not fit the transfer)."""
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

out, src = sys.argv[1], sys.argv[2]
cfg = AutoConfig.from_pretrained(src)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
model.save_pretrained(out)
AutoTokenizer.from_pretrained(src).save_pretrained(out)
print("params", sum(p.numel() for p in model.parameters()))
