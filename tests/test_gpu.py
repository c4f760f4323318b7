"""GPU checks: run only where CUDA is present (marked `gpu`; skipped elsewhere)."""

import pytest
import torch

from rpt_trl import RPTTrainer
from rpt_trl.experiments.tiny import tiny_training_config, warm_started_world


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_bf16_rpt_steps_on_gpu(tmp_path):
    model, tokenizer, dataset, _ = warm_started_world()
    args = tiny_training_config(str(tmp_path), use_cpu=False, bf16=True, max_steps=3)
    trainer = RPTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    assert next(trainer.model.parameters()).device.type == "cuda"
    logged = [e for e in trainer.state.log_history if "reward" in e]
    assert len(logged) == 3
    assert all(0.0 <= e["reward"] <= 1.0 and e["rpt/answer_rate"] > 0.5 for e in logged)
