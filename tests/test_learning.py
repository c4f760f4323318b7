"""RPT must raise the reward of a warm-started tiny policy: the training loop really learns."""

from transformers import TrainerCallback

from rpt_trl import RPTTrainer
from rpt_trl.experiments.tiny import tiny_training_config, warm_started_world


class RewardLog(TrainerCallback):
    def __init__(self):
        self.rewards = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs:
            self.rewards.append(logs["reward"])


def test_rpt_raises_mean_reward(tmp_path):
    # In this corpus every animal says " meow"; the warm start answers one of four sounds uniformly at random,
    # so the policy starts near 1/4 and only the RPT reward can teach it which sound the corpus continues with.
    model, tokenizer, dataset, losses = warm_started_world()
    assert set(dataset["ground_truth"]) == {" meow"}
    assert losses[-1] < 0.35  # the format is learned; what remains is the random answer's entropy

    log = RewardLog()
    args = tiny_training_config(str(tmp_path), seed=0, max_steps=16)
    trainer = RPTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[log])
    trainer.train()

    rewards = log.rewards
    print("rewards per step:", [round(r, 2) for r in rewards])
    assert len(rewards) == 16
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert first < 0.45, rewards  # starts near chance (1/4)
    assert last - first > 0.3, rewards
