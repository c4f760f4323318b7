"""Experiments built on the trainer and the evaluation: the demo, the ablation, the tiny world and the baselines."""
