"""Run by test_entropy.py under `accelerate launch` with two CPU processes: score the texts, rank 0 writes them."""

import json
import sys

from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer

from rpt_trl import compute_token_entropy


def main(model_dir: str, tokenizer_dir: str, texts_path: str, output_path: str) -> None:
    state = PartialState(cpu=True)  # on a machine without GPUs this is what makes the processes one gloo group
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with open(texts_path) as file:
        texts = json.load(file)
    entropies = compute_token_entropy(texts, model, tokenizer, batch_size=2, max_length=24, show_progress=False)
    if state.is_main_process:
        with open(output_path, "w") as file:
            json.dump({"num_processes": state.num_processes, "entropies": entropies}, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
