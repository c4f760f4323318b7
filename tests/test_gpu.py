"""GPU checks: run only where CUDA is present (marked `gpu`; skipped elsewhere)."""

import pytest
import torch

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.tiny import warm_started_world


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_bf16_rpt_steps_on_gpu(tmp_path):
    model, tokenizer, dataset, _ = warm_started_world()
    args = RPTConfig(
        output_dir=str(tmp_path), bf16=True, max_steps=3, per_device_train_batch_size=32, num_generations=8,
        max_completion_length=12, learning_rate=2e-3, temperature=1.0, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True,
    )  # fmt: skip
    trainer = RPTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    assert next(trainer.model.parameters()).device.type == "cuda"
    logged = [e for e in trainer.state.log_history if "reward" in e]
    assert len(logged) == 3
    assert all(0.0 <= e["reward"] <= 1.0 and e["rpt/answer_rate"] > 0.5 for e in logged)
