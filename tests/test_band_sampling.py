import math

import pytest
import torch
from datasets import Dataset
from trl.trainer.utils import RepeatSampler

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer
from rpt_trl.trainer.band_sampling import INDEX_COLUMN, BandRepeatSampler, PassRateTracker


GROUP, BATCH, SIZE = 8, 8, 200


def test_tracker_estimates_from_decayed_observations_and_the_prior():
    tracker = PassRateTracker(3, decay=0.5, prior=(1.0, 1.0))
    tracker.observe([0, 1], [1.0, 0.0], [8, 8])
    assert tracker.estimates().tolist() == pytest.approx([9 / 10, 1 / 10, 0.5])
    tracker.decay()  # 8 trials now weigh 4
    assert tracker.estimates().tolist() == pytest.approx([5 / 6, 1 / 6, 0.5])
    tracker.observe([0], [0.0], [4])
    assert tracker.estimates()[0].item() == pytest.approx(5 / 10)


def batches(sampler):
    """The sampler's batches of distinct positions, epoch after epoch."""
    epoch = 0
    while True:
        if hasattr(sampler, "set_epoch"):  # the band sampler reseeds per epoch; RepeatSampler keeps drawing
            sampler.set_epoch(epoch)
        stream = iter(sampler)
        while chunk := [index for _, index in zip(range(BATCH), stream)]:
            yield chunk
        epoch += 1


def simulate(pass_rate, sampler, tracker, steps, seed):
    """Groups of GROUP rollouts of a policy whose pass rate per position is `pass_rate`; the share of mixed groups
    per step. The tracker (if any) observes each group, as the trainer does."""
    generator, shares, stream = torch.Generator().manual_seed(seed), [], batches(sampler)
    for _ in range(steps):
        positions = next(stream)
        passes = torch.binomial(torch.full((BATCH,), float(GROUP)), pass_rate[positions], generator=generator)
        shares.append(((passes > 0) & (passes < GROUP)).float().mean().item())
        if tracker is not None:
            tracker.decay()
            tracker.observe(positions, (passes / GROUP).tolist(), [GROUP] * BATCH)
    return shares


def mean(values):
    return sum(values) / len(values)


def test_band_sampling_finds_the_learnable_positions_and_follows_a_shift():
    # 40% nearly impossible, 40% nearly trivial, 20% learnable positions, in random order.
    pass_rate = torch.cat([torch.full((80,), 0.02), torch.full((80,), 0.98), torch.linspace(0.3, 0.7, 40)])
    pass_rate = pass_rate[torch.randperm(SIZE, generator=torch.Generator().manual_seed(1))]
    tracker = PassRateTracker(SIZE)
    band = BandRepeatSampler(list(range(SIZE)), 1, tracker, (0.1, 0.9), batch_size=BATCH, seed=0)
    uniform = RepeatSampler(list(range(SIZE)), 1, batch_size=BATCH, seed=0)

    band_shares = simulate(pass_rate, band, tracker, 300, seed=0)
    uniform_shares = simulate(pass_rate, uniform, None, 300, seed=0)
    assert mean(band_shares[100:]) >= mean(uniform_shares[100:]) + 0.2  # measured: 0.63 against 0.33

    # The policy changes: the impossible positions become learnable, all others trivial.
    shifted = torch.where(pass_rate < 0.1, 0.5, 0.99)
    band_shares = simulate(shifted, band, tracker, 300, seed=1)
    uniform_shares = simulate(shifted, uniform, None, 300, seed=1)
    assert mean(band_shares[200:]) >= mean(uniform_shares[200:]) + 0.2  # measured: 0.76 against 0.44
    assert mean(band_shares[200:]) >= mean(band_shares[:50]) + 0.15  # it adapted (0.48 right after the shift)


def test_the_draw_depends_only_on_seed_epoch_batch_and_observations():
    def sampler(observed):
        tracker = PassRateTracker(SIZE)
        tracker.observe(range(0, SIZE, 2), [observed] * (SIZE // 2), [GROUP] * (SIZE // 2))
        return BandRepeatSampler(list(range(SIZE)), 2, tracker, (0.1, 0.9), batch_size=BATCH, repeat_count=2, seed=7)

    first, second = list(sampler(0.0)), list(sampler(0.0))
    assert first == second  # what two processes with the same observations iterate
    assert first != list(sampler(0.5))
    chunk = first[: BATCH * 2 * 2]
    # GRPO's layout: each position mini-repeated, each batch repeated; positions distinct within a batch.
    assert chunk[: BATCH * 2] == chunk[BATCH * 2 :] and chunk[0] == chunk[1]
    assert len(set(chunk)) == BATCH
    # Even positions were always wrong: out of the band, they are rarely drawn.
    assert sum(index % 2 == 0 for index in first) / len(first) < 0.2


def test_with_the_curriculum_batch_k_draws_from_the_positions_reached():
    order = list(range(SIZE))[::-1]  # the curriculum's order, easiest first
    sampler = BandRepeatSampler(list(range(SIZE)), 1, PassRateTracker(SIZE), (0.1, 0.9), batch_size=4, order=order)
    drawn = list(sampler)
    for batch_number in range(5):
        reached = set(order[: (batch_number + 1) * 4])
        assert set(drawn[batch_number * 4 : (batch_number + 1) * 4]) <= reached


@pytest.mark.parametrize(
    ("fields", "match"), [({"band_low": 0.9, "band_high": 0.1}, "band_low"), ({"band_decay": 0}, "band_decay")]
)
def test_config_rejects_a_bad_band(tmp_path, fields, match):
    with pytest.raises(ValueError, match=match):
        RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, **fields)


def every_other(completions, prompts, **kwargs):  # pass rate 1/2 for "a..", 0 for the rest
    return [float(i % 2) if p.startswith("a ") else 0.0 for i, p in enumerate(prompts)]


def test_trainer_observes_the_pass_rates_of_the_positions_it_trains(tmp_path):
    tokenizer = make_tiny_tokenizer()
    contexts = [f"{d} cat says" for d in "abcdefgh"]
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=4, max_steps=3, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, prompt_format="text", dynamic_sampling=False, seed=3, gradient_checkpointing=False,
        band_sampling=True, band_decay=1.0, curriculum="entropy",
    )  # fmt: skip
    dataset = Dataset.from_dict({"prompt": contexts, "entropy": [float(i) for i in range(8)]})
    trainer = RPTTrainer(
        model=make_tiny_model(tokenizer), reward_funcs=every_other, args=args, train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    assert trainer.train_dataset[INDEX_COLUMN] == list(range(8))
    trainer.train()
    tracker = trainer.band_tracker
    assert isinstance(trainer._get_train_sampler(trainer.train_dataset), BandRepeatSampler)
    assert tracker.trials.sum().item() == 3 * 8  # 3 steps of 2 groups of 4 rollouts
    seen = tracker.trials.nonzero().flatten().tolist()
    assert set(seen) <= set(range(6))  # the curriculum reached the 2 * 3 lowest-entropy positions
    assert {0, 1} <= set(seen)  # batch 0 had just these two to draw
    assert tracker.passes[0].item() == pytest.approx(tracker.trials[0].item() / 2)
    assert all(tracker.passes[index].item() == 0.0 for index in seen if index != 0)


def test_band_sampling_observes_the_refill_rounds_of_dynamic_sampling(tmp_path):
    tokenizer = make_tiny_tokenizer()
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=4, max_steps=1, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, prompt_format="text", dynamic_sampling_start_step=0, dynamic_sampling_max_refills=3,
        seed=3, gradient_checkpointing=False, band_sampling=True, band_decay=1.0,
    )  # fmt: skip
    dataset = Dataset.from_dict({"prompt": [f"{d} cat says" for d in "abcdefgh"]})
    trainer = RPTTrainer(
        model=make_tiny_model(tokenizer), reward_funcs=every_other, args=args, train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    trainer.train()
    (rounds,) = [e["dynamic_sampling/refill_rounds"] for e in trainer.state.log_history if "loss" in e]
    assert rounds > 0  # only "a cat says" is live: refills were needed
    assert trainer.band_tracker.trials.sum().item() == 2 * 4 * (rounds + 1)  # every round's groups observed


def test_the_calibration_fits_the_probes_exponent_to_the_observed_pass_rates():
    tracker = PassRateTracker(SIZE)
    probe = torch.linspace(0.05, 0.95, SIZE, dtype=torch.float64)
    tracker.set_probe(range(SIZE), probe.tolist())
    assert tracker.calibrate() == 1.0  # nothing observed yet: the probe is read as a pass rate
    assert tracker.estimates().tolist() == pytest.approx(probe.tolist())
    tracker.observe(range(0, SIZE, 2), (probe[::2] ** 3).tolist(), [64] * (SIZE // 2))
    assert tracker.exponent == pytest.approx(3.0, rel=0.05)  # refitted by the observation itself
    fitted = tracker.exponent
    unseen = tracker.estimates()[1::2]  # prior only: the calibrated probe
    assert unseen.tolist() == pytest.approx((probe[1::2] ** fitted).tolist())
    tracker.decay()  # every weight alike: the fit stands
    assert tracker.calibrate() == fitted
    # Reading the estimates never refits: an exponent set by hand is the one they use until the data change.
    tracker.exponent = 1.0
    assert tracker.estimates()[1::2].tolist() == pytest.approx(probe[1::2].tolist())
    tracker.observe([0], [float(probe[0]) ** 3], [64])
    assert tracker.exponent == pytest.approx(fitted, rel=0.05)


def test_a_position_neither_probed_nor_observed_is_left_out_of_the_band_once_others_are_probed():
    tracker = PassRateTracker(4)
    assert tracker.estimates().tolist() == [0.5] * 4  # no probe: the Beta(0.5, 0.5) prior, all tried
    tracker.set_probe([0, 1], [0.2, 0.6])
    tracker.observe([3], [0.25], [8])  # drawn while out of the band: its observations speak for it
    estimates = tracker.estimates()
    assert estimates[[0, 1]].tolist() == pytest.approx([0.2, 0.6])
    assert torch.isnan(estimates[2]) and estimates[3].item() == pytest.approx((2 + 0.25) / 9)
    sampler = BandRepeatSampler(list(range(4)), 1, tracker, (0.1, 0.9), batch_size=1, seed=0)
    assert sampler.weights(0).tolist() == pytest.approx([0.95 / 3, 0.95 / 3, 0.05, 0.95 / 3])


def test_positions_out_of_the_band_share_a_fixed_part_of_the_draws_however_many_they_are():
    # As in the demo: a few probed positions in the band, hundreds neither probed nor observed.
    tracker = PassRateTracker(600)
    tracker.set_probe(range(30), [0.5] * 30)
    sampler = BandRepeatSampler(list(range(600)), 8, tracker, (0.1, 0.9), batch_size=2, seed=0)
    weights = sampler.weights(0)
    assert weights[30:].sum() / weights.sum() == pytest.approx(0.05)  # with 0.02 a position, it was 0.28
    drawn = [index for batch_number in range(500) for index in sampler.draw(batch_number)]
    assert 0.02 < sum(index >= 30 for index in drawn) / len(drawn) < 0.09
    tracker.set_probe(range(30), [0.01] * 30)  # nothing in the band: every position alike
    assert sampler.weights(0).tolist() == [1.0] * 600


def test_the_probe_finds_the_learnable_positions_from_the_first_batch():
    # The probe is the pass rate's cube root (as on the demo corpus), so calibration has something to find.
    pass_rate = torch.cat([torch.full((80,), 0.02), torch.full((80,), 0.98), torch.linspace(0.3, 0.7, 40)])
    pass_rate = pass_rate[torch.randperm(SIZE, generator=torch.Generator().manual_seed(1))]
    shares = {}
    for probed in (False, True):
        tracker = PassRateTracker(SIZE)
        if probed:
            tracker.set_probe(range(SIZE), (pass_rate ** (1 / 3)).tolist())
        band = BandRepeatSampler(list(range(SIZE)), 1, tracker, (0.1, 0.9), batch_size=BATCH, seed=0)
        shares[probed] = simulate(pass_rate, band, tracker, 20, seed=0)
    # Measured: 0.86 against 0.40 over the first 20 batches (the fitted exponent: 2.87).
    assert mean(shares[True]) >= mean(shares[False]) + 0.3


def test_the_first_token_probe_equals_an_independent_forward_pass_of_each_context(tmp_path):
    from rpt_trl.experiments.tiny import animal_corpus, last_word_dataset
    from rpt_trl.trainer.band_sampling import FirstTokenProbe

    tokenizer = make_tiny_tokenizer()
    documents = animal_corpus()[:5] + ["the cat says meow and the dog says woof"]  # contexts of different lengths
    dataset = last_word_dataset(tokenizer, documents)
    model = make_tiny_model(tokenizer).eval()
    probe = FirstTokenProbe(dataset, tokenizer, "{context}", batch_size=4)  # two batches, padded
    assert probe.known == list(range(len(dataset))) and not probe._encoded  # tokenised when probed
    probabilities = probe(model, probe.known)
    for row, probability in zip(dataset, probabilities):
        context_ids = tokenizer(row["prompt"])["input_ids"]
        first = tokenizer(row["prompt"] + row["ground_truth"], add_special_tokens=False)["input_ids"]
        target = first[len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([context_ids])).logits[0, -1]
        assert probability == pytest.approx(torch.softmax(logits, -1)[target].item(), rel=1e-5)


def test_the_trainer_probes_every_position_before_the_first_batch(tmp_path):
    from rpt_trl.experiments.tiny import animal_corpus, last_word_dataset

    tokenizer = make_tiny_tokenizer()
    dataset = last_word_dataset(tokenizer, animal_corpus()[:8])
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=4, max_steps=1, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, prompt_template="{context}", prompt_format="text", dynamic_sampling=False, seed=3,
        gradient_checkpointing=False, band_sampling=True,
    )  # fmt: skip
    trainer = RPTTrainer(
        model=make_tiny_model(tokenizer), args=args, train_dataset=dataset, processing_class=tokenizer
    )
    drawn = []
    sampler_draw = BandRepeatSampler.draw

    def draw(self, batch_number):
        drawn.append(self.tracker.probe.clone())  # what the sampler knew when it drew
        return sampler_draw(self, batch_number)

    BandRepeatSampler.draw = draw
    try:
        trainer.train()
    finally:
        BandRepeatSampler.draw = sampler_draw
    assert drawn and not torch.isnan(drawn[0]).any()  # every position probed before the first draw
    assert ((drawn[0] > 0) & (drawn[0] < 1)).all()


def test_a_position_whose_first_token_the_tokenizer_merges_into_the_context_gets_no_probe():
    from rpt_trl.trainer.band_sampling import FirstTokenProbe

    tokenizer = make_tiny_tokenizer()
    # "the c" + "at" tokenises as "the cat": the context's last token is not a token of the joined text.
    assert tokenizer.tokenize("the c")[-1] != tokenizer.tokenize("the cat")[len(tokenizer.tokenize("the c")) - 1]
    dataset = Dataset.from_dict({"prompt": ["the cat says", "the c"], "ground_truth": [" meow", "at"],
                                 "ground_truth_boundaries": [[5], [2]]})  # fmt: skip
    probe = FirstTokenProbe(dataset, tokenizer, "{context}")
    values = probe(make_tiny_model(tokenizer).eval(), [0, 1])
    assert 0 < values[0] < 1 and math.isnan(values[1])


WORKED_TEMPLATE = (
    "Predict the next word of the text, then give it in a box. The word is often one that the text already holds, "
    'so read it twice.\n\nText: "the cat says"\n<think>Copy the word that fits.</think> \\boxed{ meow}\n\n'
    'Text: "{context}"\n<think>'
)


def test_the_answer_probe_equals_an_independent_forward_pass_of_prompt_and_worked_thought():
    from rpt_trl.data.builder import build_next_token_dataset
    from rpt_trl.data.prompt_settings import NextTokenSettings
    from rpt_trl.experiments.tiny import animal_corpus
    from rpt_trl.trainer.band_sampling import FirstTokenProbe

    tokenizer = make_tiny_tokenizer()
    documents = animal_corpus()[:5] + ["the cat says meow and the dog says woof"]  # prompts of different lengths
    lengths = [len(tokenizer(d, add_special_tokens=False)["input_ids"]) for d in documents]
    settings = NextTokenSettings(prompt_template=WORKED_TEMPLATE, prompt_format="text", min_context_tokens=2)
    dataset = build_next_token_dataset(
        documents, tokenizer, settings, positions=[[n - 1] for n in lengths], show_progress=False
    )
    model = make_tiny_model(tokenizer).eval()
    widths = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                           with_kwargs=True)  # fmt: skip
    probe = FirstTokenProbe(dataset, tokenizer, WORKED_TEMPLATE, batch_size=4, reads="answer")
    probabilities = probe(model, probe.known)
    hook.remove()
    answer = "Copy the word that fits.</think> \\boxed{"
    full_widths = []
    for row, probability in zip(dataset, probabilities):
        text = row["prompt"] + answer
        ids = tokenizer(text)["input_ids"]
        full_widths.append(len(ids))
        plain = tokenizer(text, add_special_tokens=False)["input_ids"]
        target = tokenizer(text + row["ground_truth"], add_special_tokens=False)["input_ids"][len(plain)]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        assert probability == pytest.approx(torch.softmax(logits, -1)[target].item(), rel=1e-4)
    # The template ran once (the widest forward); the two batches ran only what follows it.
    assert len(widths) == 3 and max(widths[1:]) < min(full_widths) - 32
    # Without sharing (ZeRO-3, FSDP): exactly one forward pass per batch, whatever the rows, and the same values.
    widths.clear()
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                           with_kwargs=True)  # fmt: skip
    assert probe(model, probe.known, share_prefix=False) == pytest.approx(probabilities, rel=1e-4)
    hook.remove()
    assert len(widths) == 2 and min(widths) >= min(full_widths)


def test_the_probe_shares_no_prefix_where_every_forward_pass_gathers_the_weights():
    from types import SimpleNamespace

    from rpt_trl.trainer.band_sampling import _sharded

    def trainer(stage=None, fsdp=False):
        plugin = None if stage is None else SimpleNamespace(zero_stage=stage)
        return SimpleNamespace(accelerator=SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)),
                               is_fsdp_enabled=fsdp)  # fmt: skip

    assert [_sharded(trainer()), _sharded(trainer(2)), _sharded(trainer(3)), _sharded(trainer(fsdp=True))] == [
        False, False, True, True,
    ]  # fmt: skip


def test_the_answer_probe_needs_a_template_with_a_worked_thought():
    from rpt_trl.experiments.tiny import animal_corpus, last_word_dataset
    from rpt_trl.trainer.band_sampling import FirstTokenProbe

    tokenizer = make_tiny_tokenizer()
    dataset = last_word_dataset(tokenizer, animal_corpus()[:2])
    for template in ("{context}", "few_shot"):  # no worked example; examples that think differently
        with pytest.raises(ValueError, match="band_probe_reads='context'"):
            FirstTokenProbe(dataset, tokenizer, template, reads="answer")
    with pytest.raises(ValueError, match="band_probe_reads"):
        RPTConfig(output_dir="unused", use_cpu=True, bf16=False, band_probe_reads="prompt")


@pytest.mark.parametrize(
    "template, reads",
    [(WORKED_TEMPLATE, "answer"), ("copy_word", "answer"), ("few_shot", "context"), ("{context}", "context")],
)
def test_by_default_the_probe_reads_the_answer_where_the_template_has_a_worked_thought(template, reads, caplog):
    from rpt_trl.trainer import rpt_trainer

    tokenizer = make_tiny_tokenizer()
    from rpt_trl.data.templates import resolve_template

    prompt = resolve_template(template).replace("{context}", "the cat")
    dataset = Dataset.from_dict({"prompt": [prompt], "ground_truth": [" says"],
                                 "ground_truth_boundaries": [[5]]})  # fmt: skip
    args = RPTConfig(output_dir="unused", use_cpu=True, bf16=False, prompt_template=template, prompt_format="text")
    with caplog.at_level("INFO", logger=rpt_trainer.logger.name):
        probe = rpt_trainer._first_token_probe(dataset, tokenizer, args)
    assert probe.texts[0].endswith("</think> \\boxed{") == (reads == "answer")
    assert ("template's worked thought" in caplog.text) == (reads == "answer")


def test_dynamic_sampling_refills_from_the_band(tmp_path):
    """Once the tracker knows that only "a cat says" splits its group, a refill round draws it about 95% of the time
    (the band's share), where a uniform refill draws it 1 time in 8."""
    tokenizer = make_tiny_tokenizer()
    dataset = Dataset.from_dict({"prompt": [f"{d} cat says" for d in "abcdefgh"]})
    drawn = {}
    for band_sampling in (True, False):
        args = RPTConfig(
            output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=4,
            max_completion_length=4, max_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
            prompt_format="text", dynamic_sampling_start_step=0, dynamic_sampling_max_refills=1, seed=3,
            gradient_checkpointing=False, band_sampling=band_sampling, band_probe=False,
        )  # fmt: skip
        trainer = RPTTrainer(
            model=make_tiny_model(tokenizer), reward_funcs=every_other, args=args, train_dataset=dataset,
            processing_class=tokenizer,
        )  # fmt: skip
        if band_sampling:
            trainer.band_tracker.observe(range(8), [0.5] + [0.0] * 7, [40.0] * 8)
            trainer._get_train_sampler(trainer.train_dataset).draw(0)
        refills = [trainer._refill_prompts(2, refill_round=n) for n in range(1, 61)]
        assert all(len({row["prompt"] for row in rows}) == 2 for rows in refills)  # two distinct positions
        drawn[band_sampling] = sum(any(row["prompt"].startswith("a ") for row in rows) for rows in refills)
    assert drawn[True] >= 55  # P(a refill of 2 misses it) is about 0.05 with the band
    assert drawn[False] <= 30  # about 60 * 2 / 8 = 15 uniformly


def test_a_refill_skips_the_positions_its_step_has_generated(tmp_path):
    tokenizer = make_tiny_tokenizer()
    dataset = Dataset.from_dict({"prompt": [f"{d} cat says" for d in "abcdefgh"]})
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=4, max_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        prompt_format="text", dynamic_sampling=False, seed=3,
        gradient_checkpointing=False, band_sampling=True, band_probe=False,
    )  # fmt: skip
    trainer = RPTTrainer(
        model=make_tiny_model(tokenizer), reward_funcs=every_other, args=args, train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    trainer.band_tracker.observe(range(8), [0.5, 0.5] + [0.0] * 6, [40.0] * 8)  # "a" and "b" in the band
    trainer._get_train_sampler(trainer.train_dataset).draw(0)
    trainer.model.train()
    inputs = [trainer.train_dataset[0]] * 4 + [trainer.train_dataset[2]] * 4  # this step generates "a" and "c"
    trainer._generate_and_score_completions(inputs)
    assert trainer.band_positions_generated() == {0, 2}
    refills = [trainer._refill_prompts(1, refill_round=n)[0]["prompt"] for n in range(1, 41)]
    assert not {"a cat says", "c cat says"} & set(refills)
    assert refills.count("b cat says") >= 30  # the band's other position, about 95% of the time
