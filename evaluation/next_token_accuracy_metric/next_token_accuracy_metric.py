r"""Next-token accuracy (RPT, reasoning mode) as a Hugging Face `evaluate` metric module.

Load it from this folder: `evaluate.load("evaluation/next_token_accuracy_metric")`. The computation is rpt-trl's:
[`score_completions`] parses and scores each completion, exactly as the training reward does.
"""

import datasets
import evaluate

from rpt_trl import score_completions


_DESCRIPTION = """
Next-token accuracy of Reinforcement Pre-Training (Dong et al. 2025, arXiv 2506.08007), reasoning mode: a completion
scores 1 when the content of its last \\boxed{} after </think> is a byte prefix of the real continuation that ends on
one of its token boundaries, else 0. The metric is the mean score.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: completions (strings), one per position.
    references: one dict per position, {"ground_truth": str, "ground_truth_boundaries": list[int]}, as the columns of
        rpt_trl.build_next_token_dataset.
    require_think_close: only a \\boxed{} after </think> counts (default True, the paper's format).
Returns:
    next_token_accuracy: the mean reward, in [0, 1].
    answer_rate: the fraction of completions with a parsable answer.
Examples:
    >>> metric = evaluate.load("evaluation/next_token_accuracy_metric")
    >>> metric.compute(predictions=["<think>a</think> \\\\boxed{ size}"],
    ...                references=[{"ground_truth": " size of", "ground_truth_boundaries": [5, 8]}])
    {'next_token_accuracy': 1.0, 'answer_rate': 1.0}
"""

_CITATION = """
@article{dong2025reinforcement,
    title = {{Reinforcement Pre-Training}},
    author = {Qingxiu Dong and Li Dong and Yao Tang and Tianzhu Ye and Yutao Sun and Zhifang Sui and Furu Wei},
    year = 2025,
    eprint = {arXiv:2506.08007},
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NextTokenAccuracyMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": {
                        "ground_truth": datasets.Value("string"),
                        "ground_truth_boundaries": datasets.Sequence(datasets.Value("int32")),
                    },
                }
            ),
            reference_urls=["https://arxiv.org/abs/2506.08007"],
        )

    def _compute(self, predictions, references, require_think_close=True):
        if not predictions:
            return {"next_token_accuracy": None, "answer_rate": None}
        rewards, parsed = score_completions(
            predictions,
            [r["ground_truth"] for r in references],
            [r["ground_truth_boundaries"] for r in references],
            require_think_close=require_think_close,
        )
        answered = [prediction is not None for prediction in parsed]
        return {
            "next_token_accuracy": sum(rewards) / len(rewards),
            "answer_rate": sum(answered) / len(answered),
        }
