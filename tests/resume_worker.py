"""A training run for the kill-and-resume test (tests/test_fault_tolerance.py), launched as a subprocess.

    python tests/resume_worker.py WORLD_DIR OUTPUT_DIR MODE

MODE is `full` (train to the end), `kill-at-save-N` (write `OUTPUT_DIR/killme` and block while checkpoint-N is
half written, for the parent to SIGKILL) or `resume` (`train(resume_from_checkpoint=True)`). Every reward call
appends the step, its prompts and its sampled completions to `OUTPUT_DIR/steps.jsonl`: the data order and the
sampling, step by step.
"""

import json
import os
import sys
import time

from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoTokenizer

from rpt_trl import RPTConfig, RPTTrainer, prefix_match_reward


MAX_STEPS, SAVE_STEPS = 8, 2


def main(world_dir: str, output_dir: str, mode: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(world_dir)
    model = AutoModelForCausalLM.from_pretrained(world_dir, use_safetensors=True)
    dataset = load_from_disk(os.path.join(world_dir, "dataset"))
    record = open(os.path.join(output_dir, "steps.jsonl"), "a")

    def recorded_reward(completions, trainer_state, **kwargs):
        row = {
            "pid": os.getpid(),
            "step": trainer_state.global_step + 1,
            "prompts": kwargs["prompts"],
            "completions": completions,
        }
        record.write(json.dumps(row) + "\n")
        record.flush()
        return prefix_match_reward(completions, trainer_state=trainer_state, **kwargs)

    args = RPTConfig(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        seed=0,
        max_steps=MAX_STEPS,
        save_steps=SAVE_STEPS,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=10,
        learning_rate=2e-3,
        temperature=1.0,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = RPTTrainer(
        model=model, reward_funcs=recorded_reward, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    if mode.startswith("kill-at-save-"):
        kill_step = int(mode.rsplit("-", 1)[1])
        save_rng_state = trainer._save_rng_state

        def save_rng_state_or_wait(checkpoint_dir):
            # The model and optimizer of this checkpoint are on disk, its RNG and trainer state are not yet.
            if trainer.state.global_step == kill_step:
                open(os.path.join(output_dir, "killme"), "w").close()
                time.sleep(600)
            save_rng_state(checkpoint_dir)

        trainer._save_rng_state = save_rng_state_or_wait
    trainer.train(resume_from_checkpoint=True if mode == "resume" else None)


if __name__ == "__main__":
    main(*sys.argv[1:4])
