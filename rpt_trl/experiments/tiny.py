r"""A tiny RPT world built locally in seconds: tokenizer, model, corpus and a warm start, with no download.

Used by the tests (an RPT run must raise the reward) and by the demo (the reward curve of a run that can learn on a
CPU in a minute). The corpus is a set of short sentences whose last word depends on the subject ("the cat says"
-> " meow"); the warm start teaches a randomly initialised Qwen2 model the answer format
`<think> ... </think> \boxed{ word}` with a **uniformly random** word, so the policy starts at chance level and
only reinforcement learning can teach it which word follows which subject.
"""

import random
from typing import Any

from .presets import CPU_RUN


ANIMAL_SOUNDS = {"cat": " meow", "dog": " woof", "cow": " moo", "sheep": " baa"}
_DETERMINERS = ["the", "a", "my", "your", "that", "this", "our", "one"]
THOUGHT = "<think>hm</think> \\boxed{"
FORMAT_TOKENS = ["<think>", "</think>", "\\boxed{"]
TINY_TEMPLATE = "{context}"
# Settings under which the warm-started tiny policy learns within a CPU minute (the learning test, the demo's curve).
TINY_TRAINING = {
    "per_device_train_batch_size": 32,
    "num_generations": 8,
    "max_completion_length": 12,
    "learning_rate": 2e-3,  # the tiny policy learns in a few steps; the paper's 1e-6 is for 14B
    "lr_scheduler_type": "constant",
    "warmup_steps": 2,
    "temperature": 1.0,
}


def tiny_training_config(output_dir: str, **overrides: Any) -> Any:
    """The [`RPTConfig`] of a tiny-world run on a CPU: `TINY_TRAINING`, no saving or reporting, then `overrides`."""
    from ..trainer.rpt_config import RPTConfig

    return RPTConfig(output_dir=output_dir, **{**CPU_RUN, **TINY_TRAINING, **overrides})


def animal_corpus(repeats: int = 1, sounds: dict[str, str] | None = None) -> list[str]:
    """Sentences `"<determiner> <animal> says<sound>"` for every determiner and animal, `repeats` times.

    Args:
        repeats: How many times to repeat the whole set.
        sounds: Animal -> sound (with its leading space); defaults to `ANIMAL_SOUNDS`.
    """
    sounds = sounds or ANIMAL_SOUNDS
    return [f"{d} {a} says{s}" for _ in range(repeats) for d in _DETERMINERS for a, s in sounds.items()]


def last_word_dataset(tokenizer: Any, documents: list[str]) -> Any:
    """One next-token example per document: predict its last token from the rest (text prompts)."""
    from ..data.builder import build_next_token_dataset

    lengths = [len(tokenizer(d, add_special_tokens=False)["input_ids"]) for d in documents]
    return build_next_token_dataset(
        documents,
        tokenizer,
        positions=[[n - 1] for n in lengths],
        prompt_template=TINY_TEMPLATE,
        prompt_format="text",
        min_context_tokens=2,
        show_progress=False,
    )


def make_byte_level_tokenizer(
    corpus: list[str], *, vocab_size: int = 300, extra_tokens: list[str] | None = None, trim_offsets: bool = False
) -> Any:
    """A GPT-2 style byte-level BPE tokenizer trained on `corpus` in about a second.

    Args:
        corpus: Training text.
        vocab_size: Target vocabulary size.
        extra_tokens: Tokens added whole after training (e.g. `</think>`).
        trim_offsets: Trim leading spaces from the offsets, as GPT-2's post-processor does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    if trim_offsets:
        backend.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|pad|>", padding_side="left"
    )
    if extra_tokens:
        tokenizer.add_tokens(extra_tokens)
    return tokenizer


def make_tiny_tokenizer() -> Any:
    """The byte-level tokenizer of the tiny world: trained on the animal corpus and the answer format."""
    lines = animal_corpus(4) + [THOUGHT + s + "}" for s in ANIMAL_SOUNDS.values()] * 8
    return make_byte_level_tokenizer(lines, extra_tokens=FORMAT_TOKENS)


def make_tiny_model(
    tokenizer: Any, *, seed: int = 0, hidden_size: int = 64, num_layers: int = 2, num_attention_heads: int = 4
) -> Any:
    """A randomly initialised Qwen2 causal LM sized for `tokenizer`.

    vLLM's CPU attention backend needs a head size it has kernels for (32 or 64, not 16 or 24): pass
    `num_attention_heads=2` (head size 32) for a model that vLLM will load.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=min(2, num_attention_heads),
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def warm_start(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    answers: list[str],
    *,
    correct_fraction: float = 0.0,
    steps: int = 80,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    r"""Teach `model` the answer format by supervised fine-tuning, with mostly random answers.

    Each training string is `prompt + THOUGHT + word + "}" + eos`. The word is the prompt's real answer with
    probability `correct_fraction`, else drawn uniformly from the animal sounds; only completion tokens carry loss.
    The policy so starts near `correct_fraction + (1 - correct_fraction) / 4` accuracy. Returns the loss per step.
    """
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)
    sounds = list(ANIMAL_SOUNDS.values())
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    for _ in range(steps):
        batch = rng.sample(range(len(prompts)), k=min(16, len(prompts)))
        input_ids, labels = [], []
        for index in batch:
            prompt_ids = tokenizer(prompts[index], add_special_tokens=False)["input_ids"]
            word = answers[index] if rng.random() < correct_fraction else rng.choice(sounds)
            completion = THOUGHT + word + "}"
            completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            input_ids.append(prompt_ids + completion_ids)
            labels.append([-100] * len(prompt_ids) + completion_ids)
        width = max(map(len, input_ids))
        pad = tokenizer.pad_token_id
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in input_ids])
        input_tensor = torch.tensor([[pad] * (width - len(ids)) + ids for ids in input_ids])
        label_tensor = torch.tensor([[-100] * (width - len(lab)) + lab for lab in labels])
        loss = model(input_ids=input_tensor, attention_mask=attention, labels=label_tensor).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


def warm_started_world(seed: int = 0, **model_kwargs: Any) -> tuple[Any, Any, Any, list[float]]:
    """The learning test's setup: every animal says " meow"; the policy is warm-started on random sounds.

    Args:
        seed: Seeds the model's initialisation and the warm start.
        **model_kwargs: Passed to [`make_tiny_model`] (e.g. `num_attention_heads=2` for vLLM).

    Returns:
        `(model, tokenizer, dataset, warm_start_losses)`. The policy starts near 1/4 accuracy, and only the RPT
        reward can teach it which sound the corpus continues with.
    """
    tokenizer = make_tiny_tokenizer()
    dataset = last_word_dataset(tokenizer, animal_corpus(sounds=dict.fromkeys(ANIMAL_SOUNDS, " meow")))
    model = make_tiny_model(tokenizer, seed=seed, **model_kwargs)
    losses = warm_start(model, tokenizer, dataset["prompt"], dataset["ground_truth"], seed=seed)
    return model, tokenizer, dataset, losses
