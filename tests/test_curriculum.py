"""The entropy curriculum: training positions from the lowest to the highest entropy, checked before training."""

import pytest
from datasets import Dataset

from rpt_trl import RPTTrainer
from rpt_trl.experiments.tiny import tiny_training_config, warm_started_world
from rpt_trl.trainer.sampler import EntropyCurriculumRepeatSampler, entropy_order


@pytest.fixture(scope="module")
def world():
    model, tokenizer, dataset, _ = warm_started_world()
    # A fixed permutation of entropies, so that the curriculum order differs from the dataset order.
    entropies = [((7 * index) % len(dataset)) / 10 for index in range(len(dataset))]
    return model, tokenizer, dataset.add_column("entropy", entropies)


def test_entropy_order_ties_and_unscored_rows():
    assert entropy_order([1.5, 0.2, float("nan"), 0.2, 0.9]) == [1, 3, 4, 0, 2]


def test_sampler_visits_groups_from_low_to_high_entropy_every_epoch():
    data = Dataset.from_dict({"entropy": [0.9, 0.1, 0.5, 0.3, None, 0.7]})
    sampler = EntropyCurriculumRepeatSampler(data, mini_repeat_count=2, batch_size=2, repeat_count=1)
    expected = [1, 1, 3, 3, 2, 2, 5, 5, 0, 0, 4, 4]  # the unscored row last; every index repeated per generation
    assert list(sampler) == expected
    assert list(sampler) == expected  # the next epoch runs the curriculum again
    fresh = EntropyCurriculumRepeatSampler(data, mini_repeat_count=2, batch_size=2, repeat_count=1)
    assert list(fresh) == expected  # no state: a resumed run (a new sampler) sees the same order


@pytest.mark.parametrize("seed", [0, 1])
def test_trainer_trains_in_entropy_order_whatever_the_seed(tmp_path, world, seed):
    model, tokenizer, dataset = world
    args = tiny_training_config(str(tmp_path), max_steps=1, curriculum="entropy", seed=seed)
    trainer = RPTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    order = list(dict.fromkeys(trainer._get_train_sampler()))  # first visit of each index
    visited = [dataset[index]["entropy"] for index in order]
    assert visited == sorted(dataset["entropy"]) and order != list(range(len(dataset)))
    # The dataloader the Trainer iterates yields the easiest positions first.
    first_batch = next(iter(trainer.get_train_dataloader()))
    easiest = {dataset[index]["prompt"] for index in order[: len(first_batch) // args.num_generations]}
    assert {row["prompt"] for row in first_batch} == easiest
    trainer.create_model_card()
    assert "| `curriculum` | `entropy` |" in (tmp_path / "README.md").read_text()


def test_missing_entropy_column_is_refused_before_training(tmp_path, world):
    model, tokenizer, dataset = world
    args = tiny_training_config(str(tmp_path), max_steps=1, curriculum="entropy")
    with pytest.raises(ValueError, match="'entropy' column"):
        RPTTrainer(model=model, args=args, train_dataset=dataset.remove_columns("entropy"), processing_class=tokenizer)


def test_unknown_curriculum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="curriculum must be"):
        tiny_training_config(str(tmp_path), curriculum="length")
