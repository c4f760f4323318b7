r"""The paper's comparison on any scale: several models, each in standard and reasoning mode, scored on the same
held-out positions, with bootstrap intervals and a verdict on each difference.

A *system* is a model in a mode, named `label:mode` (`base:standard`, `rpt:reasoning`). Every system is scored per
position on the same rows: 0 or 1 in standard mode, the mean reward of the samples in reasoning mode. The intervals
resample positions (not samples), because positions are the units that vary; a difference between two systems
resamples the same positions for both (a paired bootstrap), which is what makes a small difference on shared
positions measurable.

Used by `rpt-trl evaluate compare` and by the demo:

```
rpt-trl evaluate compare --dataset held_out --documents docs.jsonl \
    --models base=google/gemma-3-270m sft=out/next-token rpt=out/rpt --target rpt:reasoning --output compare.json
```
"""

import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..plotting import pyplot
from ..results import load_results, model_label, scored_on, validate_result
from .next_token import Generator, reasoning_scores, reasoning_summary, standard_scores, summarize


MODES = ("standard", "reasoning")
CONFIDENCE = 0.95
NUM_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """An estimate and its bootstrap interval."""

    estimate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        """The larger distance from the estimate to an end of the interval."""
        return max(self.estimate - self.low, self.high - self.estimate)

    @property
    def significant(self) -> bool:
        """Whether the interval leaves out 0 (for a difference: the systems differ at this confidence)."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def _resampled_means(columns: Sequence[Sequence[float]], num_resamples: int, seed: int) -> list[Any]:
    """Means of each column over the same `num_resamples` resamples of positions (rows drawn with replacement)."""
    import numpy as np

    lengths = {len(column) for column in columns}
    if len(lengths) != 1:
        raise ValueError(f"The systems were scored on different numbers of positions: {sorted(lengths)}.")
    (n,) = lengths
    if n == 0:
        raise ValueError("No positions to resample.")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be at least 1, got {num_resamples}.")
    draws = np.random.default_rng(seed).integers(0, n, size=(num_resamples, n))
    return [np.asarray(column, dtype=np.float64)[draws].mean(axis=1) for column in columns]


def _interval(estimate: float, resampled: Any, confidence: float) -> Interval:
    import numpy as np

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}.")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high))


def bootstrap_interval(
    position_scores: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    num_resamples: int = NUM_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean score and its percentile bootstrap interval, resampling positions.

    Args:
        position_scores: One score per position (a sample mean in reasoning mode).
        confidence: Coverage of the interval.
        num_resamples: Bootstrap resamples.
        seed: Seed of the resampling, so a report is reproducible.

    Example:
        >>> interval = bootstrap_interval([0.0, 1.0] * 100)
        >>> interval.estimate, round(interval.half_width, 2)
        (0.5, 0.07)
    """
    (means,) = _resampled_means([position_scores], num_resamples, seed)
    return _interval(sum(position_scores) / len(position_scores), means, confidence)


def paired_difference(
    scores: Sequence[float],
    reference: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    num_resamples: int = NUM_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean of `scores - reference` over the same positions, with a paired bootstrap interval.

    Example:
        >>> paired_difference([1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0]).estimate
        0.25
    """
    a, b = _resampled_means([scores, reference], num_resamples, seed)
    estimate = (sum(scores) - sum(reference)) / len(scores)
    return _interval(estimate, a - b, confidence)


def difference_verdict(system: str, reference: str, difference: Interval, *, confidence: float = CONFIDENCE) -> str:
    """One sentence on a difference of accuracy, in points, saying whether it is significant.

    Example:
        >>> difference_verdict("rpt:reasoning", "base:reasoning", Interval(0.10, 0.04, 0.16))
        'rpt:reasoning is above base:reasoning by 10.0 points (95% interval 4.0 to 16.0): significant.'
        >>> difference_verdict("rpt:reasoning", "sft:standard", Interval(-0.02, -0.09, 0.05))
        'rpt:reasoning is below sft:standard by 2.0 points (95% interval -9.0 to 5.0): not significant, the interval includes 0.'
    """
    side = "above" if difference.estimate > 0 else "below" if difference.estimate < 0 else "level with"
    amount = "" if side == "level with" else f" by {100 * abs(difference.estimate):.1f} points"
    span = f"({round(100 * confidence)}% interval {100 * difference.low:.1f} to {100 * difference.high:.1f})"
    ending = "significant." if difference.significant else "not significant, the interval includes 0."
    return f"{system} is {side} {reference}{amount} {span}: {ending}"


def difference_record(
    system: str, reference: str, scores: Sequence[float], reference_scores: Sequence[float], **settings: Any
) -> dict[str, Any]:
    """`system`'s paired difference to `reference` as the results record it: the interval, significance, verdict."""
    difference = paired_difference(scores, reference_scores, **settings)
    return {
        "system": system, "reference": reference, **difference.as_dict(), "significant": difference.significant,
        "verdict": difference_verdict(system, reference, difference, confidence=settings.get("confidence", CONFIDENCE)),
    }  # fmt: skip


def compare_scores(
    position_scores: Mapping[str, Sequence[float]],
    target: str,
    *,
    confidence: float = CONFIDENCE,
    num_resamples: int = NUM_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Intervals of every system and the target's paired differences against each of the others.

    Args:
        position_scores: `{system: scores}`, every list over the same positions in the same order.
        target: The system the others are compared with (e.g. `"rpt:reasoning"`).

    Returns:
        `{"intervals": {system: {"estimate", "low", "high"}}, "differences": [{"system", "reference", "estimate",
        "low", "high", "significant", "verdict"}, ...]}`.
    """
    if target not in position_scores:
        raise ValueError(f"The target {target!r} is not among the systems {list(position_scores)}.")
    settings = {"confidence": confidence, "num_resamples": num_resamples, "seed": seed}
    intervals = {name: bootstrap_interval(scores, **settings) for name, scores in position_scores.items()}
    differences = [
        difference_record(target, name, position_scores[target], scores, **settings)
        for name, scores in position_scores.items()
        if name != target
    ]
    return {"intervals": {name: i.as_dict() for name, i in intervals.items()}, "differences": differences}


def add_differences(
    results: Sequence[dict[str, Any]],
    system: str,
    references: Sequence[str],
    *,
    confidence: float = CONFIDENCE,
    num_resamples: int = NUM_RESAMPLES,
    seed: int = 0,
) -> None:
    """Attach to the result of `system` (`"label:mode"`) its paired differences against `references`, as
    [`compare_scores`] does for the target: for a second system the question is asked of (e.g. `"rpt+ntp:standard"`
    against `"next-token:standard"` only)."""
    by_name = {f"{r['label']}:{r['mode']}": r for r in results}
    missing = [name for name in (system, *references) if name not in by_name]
    if missing:
        raise ValueError(f"{missing} are not among the systems compared ({list(by_name)}).")
    settings = {"confidence": confidence, "num_resamples": num_resamples, "seed": seed}
    target = by_name[system]
    for reference in references:
        target.setdefault("differences", []).append(
            difference_record(system, reference, target["position_scores"], by_name[reference]["position_scores"],
                              **settings)
        )  # fmt: skip


def parse_system(name: str) -> tuple[str, str]:
    """`"rpt:reasoning"` -> `("rpt", "reasoning")`."""
    label, separator, mode = name.rpartition(":")
    if not separator or not label or mode not in MODES:
        raise ValueError(f"A system is LABEL:MODE with MODE in {MODES}, got {name!r}.")
    return label, mode


def training_record(path: str | Path) -> dict[str, Any] | None:
    """What a checkpoint's `trainer_state.json` says about its training: optimizer steps and tokens seen.

    Returns `None` for a model that has no such file (a base model).
    """
    state_file = Path(path) / "trainer_state.json"
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    return {"optimizer_steps": state.get("global_step"), "tokens_seen": state.get("num_input_tokens_seen")}


def compare_models(
    models: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    tokenizer: Any,
    generator: Callable[[Any], Generator] | None = None,
    load: Callable[[Any], Any] | None = None,
    documents: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
    target: str | None = None,
    num_samples: int = 1,
    dataset: str = "held-out positions",
    training: Mapping[str, Mapping[str, Any] | None] | None = None,
    require_think_close: bool = True,
    confidence: float = CONFIDENCE,
    num_resamples: int = NUM_RESAMPLES,
    seed: int = 0,
    autocast_dtype: torch.dtype | None = None,
) -> list[dict[str, Any]]:
    """Score every model in every mode on the same rows and compare the target with the other systems.

    Args:
        models: `{label: model}`; a model is what `generator` and (standard mode) `standard_scores` take, e.g. a
            loaded `PreTrainedModel`.
        rows: Next-token rows (`prompt`, `ground_truth`, `ground_truth_boundaries`, and for standard mode
            `document_id` and `position`).
        tokenizer: The tokenizer the rows were built with.
        generator: `generator(model) -> generate(prompts, num_samples)` for reasoning mode (e.g. a
            `transformers_generator` with the evaluation's settings).
        load: Turns a value of `models` into the module standard mode runs (default: the value itself); lets
            `models` hold paths.
        documents: The source documents, for standard mode.
        modes: Modes to score each model in.
        target: The system compared with all the others; default: the last model in reasoning mode (or in the last
            mode when reasoning is not scored).
        num_samples: Completions per position in reasoning mode.
        dataset: Name of the rows in the results.
        training: `{label: {"optimizer_steps", "tokens_seen", ...}}` shown next to each model (matched compute).
        autocast_dtype: Score each model under `torch.autocast` at this dtype (e.g. `torch.bfloat16`, on a CPU with
            native bf16 matrix units), in one context per model and mode, so that its weights are cast once there;
            every model is then scored in the same precision. None: in the models' own dtype.

    Returns:
        One result per system in the project's results schema, with `label`, `position_scores`, the interval under
        `overall["interval"]` and, on the target, its `differences`.
    """
    target = _check_comparison(models, rows, modes=modes, documents=documents, generator=generator, target=target)
    rows = list(rows)
    results, scores = [], {}
    for label, model in models.items():
        for mode in modes:
            started = time.perf_counter()
            precision = (
                contextlib.nullcontext()
                if autocast_dtype is None
                else torch.autocast(_device_type(model), autocast_dtype)
            )
            name = f"{label}:{mode}"
            print(f"Scoring {name} on {len(rows)} positions", flush=True)
            result: dict[str, Any] = {"model": label, "label": label, "dataset": dataset, "mode": mode}
            if mode == "standard":
                module = load(model) if load else model
                with precision:
                    scores[name] = standard_scores(module, tokenizer, rows, documents, show_progress=False)
                result["overall"], result["splits"] = summarize(rows, scores[name])
            else:
                with precision:
                    _, rewards, predictions = reasoning_scores(
                        rows, generator(model), num_samples=num_samples, require_think_close=require_think_close
                    )
                scores[name] = [sum(r) / len(r) for r in rewards]
                result["overall"], result["splits"] = reasoning_summary(rows, rewards, predictions)
            if training and training.get(label):
                result["training"] = dict(training[label])
            result["position_scores"] = scores[name]
            result["wall_time_s"] = round(time.perf_counter() - started, 1)
            results.append(result)
    comparison = compare_scores(scores, target, confidence=confidence, num_resamples=num_resamples, seed=seed)
    for result in results:
        name = f"{result['label']}:{result['mode']}"
        result["overall"]["interval"] = comparison["intervals"][name]
        result["confidence"] = confidence
        if name == target:
            result["differences"] = comparison["differences"]
    return results


def _check_comparison(
    models: Mapping[str, Any], rows: Sequence[Any], *, modes: Sequence[str], documents: Any, generator: Any,
    target: str | None,
) -> str:  # fmt: skip
    """Refuse a comparison that cannot run, before any model is scored; returns the target system."""
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"modes must be among {MODES}, got {mode!r}.")
    if "standard" in modes and documents is None:
        raise ValueError("Standard mode needs the source documents the rows were built from.")
    if "reasoning" in modes and generator is None:
        raise ValueError("Reasoning mode needs a generator: generator(model) -> generate(prompts, num_samples).")
    if not rows:
        raise ValueError("No rows to evaluate.")
    target = target or f"{list(models)[-1]}:{'reasoning' if 'reasoning' in modes else modes[-1]}"
    label, mode = parse_system(target)
    if label not in models or mode not in modes:
        raise ValueError(f"The target {target!r} is not among the systems scored (models {list(models)}, modes "
                         f"{list(modes)}).")  # fmt: skip
    return target


def system_name(result: Mapping[str, Any]) -> str:
    """`label:mode`, with the results table's name for the model."""
    return f"{model_label(result)}:{result['mode']}"


def comparison_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """The comparison table (accuracy with its interval, matched-compute columns) and the target's verdicts."""
    confidence = round(100 * results[0].get("confidence", CONFIDENCE))
    lines = [
        f"Positions: {scored_on(results)}.",
        "",
        f"| system | accuracy (%) | {confidence}% interval | positions | optimizer steps | training tokens |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        overall, training = result["overall"], result.get("training") or {}
        interval = overall.get("interval")
        span = f"{100 * interval['low']:.1f} – {100 * interval['high']:.1f}" if interval else "–"
        steps, tokens = training.get("optimizer_steps"), training.get("tokens_seen")
        lines.append(
            f"| {system_name(result)} | {100 * overall['accuracy']:.1f} | {span} | {overall['n']} | "
            f"{'–' if steps is None else steps} | {'–' if tokens is None else f'{tokens:,}'} |"
        )
    verdicts = [d["verdict"] for result in results for d in result.get("differences", ())]
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(f"- {v}" for v in verdicts) + "\n" if verdicts else "")


def plot_comparison(results: Sequence[Mapping[str, Any]], path: str | Path, *, title: str | None = None) -> None:
    """Bars of each system's accuracy with its interval, and the target's differences with theirs (PNG)."""
    plt = pyplot()

    differences = [d for result in results for d in result.get("differences", ())]
    figure, axes = plt.subplots(1, 2 if differences else 1, figsize=(11 if differences else 6, 3.8), squeeze=False)
    left = axes[0][0]
    colors = {"standard": "tab:gray", "reasoning": "tab:blue"}
    for index, result in enumerate(results):
        overall = result["overall"]
        interval = overall.get("interval") or {"low": overall["accuracy"], "high": overall["accuracy"]}
        value = 100 * overall["accuracy"]
        error = [[value - 100 * interval["low"]], [100 * interval["high"] - value]]
        left.bar(index, value, color=colors[result["mode"]], yerr=error, capsize=4)
        left.text(index, 100 * interval["high"] + 2, f"{value:.1f}", ha="center", va="bottom", fontsize=8)
    left.set_xticks(range(len(results)), [system_name(r) for r in results], rotation=30, ha="right", fontsize=8)
    confidence = round(100 * results[0].get("confidence", CONFIDENCE))
    left.set(ylabel="next-token accuracy (%)", title=title or f"Held-out accuracy, {confidence}% intervals")
    left.set_ylim(
        0, max(100 * (r["overall"].get("interval") or {"high": 0.5})["high"] for r in results) + 22
    )  # headroom: the value labels sit above the bars, the legend above them
    modes = [mode for mode in colors if any(r["mode"] == mode for r in results)]
    if len(modes) > 1:  # one mode (an ablation): the colour says nothing, and a legend would hide a bar's label
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[mode]) for mode in modes]
        left.legend(handles, [f"{mode} mode" for mode in modes], fontsize=8, loc="upper left", ncol=2)
    if differences:
        right = axes[0][1]
        for index, difference in enumerate(differences):
            value = 100 * difference["estimate"]
            error = [[value - 100 * difference["low"]], [100 * difference["high"] - value]]
            color = "tab:green" if difference["significant"] and value > 0 else (
                "tab:red" if difference["significant"] else "tab:gray")  # fmt: skip
            right.errorbar(value, index, xerr=error, fmt="o", color=color, capsize=4)
        right.axvline(0, color="black", linewidth=0.8)
        right.margins(x=0.15, y=0.2)  # zero and the ends of the intervals clear of the frame
        one_system = len({d["system"] for d in differences}) == 1  # one target against the others, or several pairs
        names = [f"− {d['reference']}" if one_system else f"{d['system']} − {d['reference']}" for d in differences]
        right.set_yticks(range(len(differences)), names, fontsize=8)
        right.invert_yaxis()
        markers = [plt.Line2D([], [], marker="o", linestyle="", color=c) for c in ("tab:green", "tab:red", "tab:gray")]
        right.legend(markers, ["significant gain", "significant loss", "not significant"], fontsize=8, loc="best")
        title = f"{differences[0]['system']} minus each system" if one_system else "Paired differences"
        right.set(xlabel=f"difference in accuracy (points), {confidence}% interval", title=title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_comparison(results: Sequence[Mapping[str, Any]], output: str | Path, *, title: str | None = None) -> str:
    """Write the results (`output`, a list in the results schema), the table (`.md`) and the chart (`.png`).

    Returns:
        The Markdown it wrote.
    """
    for index, result in enumerate(results):
        validate_result(result, where=f"comparison result {index}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(list(results), indent=2, ensure_ascii=False) + "\n")
    markdown = comparison_markdown(results)
    output.with_suffix(".md").write_text(markdown)
    plot_comparison(results, output.with_suffix(".png"), title=title)
    return markdown


def load_comparison(path: str | Path) -> list[dict[str, Any]]:
    """Read a comparison written by [`write_comparison`] (validated as results)."""
    results = load_results([path])
    if not all("position_scores" in result for result in results):
        raise ValueError(f"{path} is not a comparison: its results have no position_scores.")
    return results


def result_interval(result: Mapping[str, Any]) -> Interval | None:
    """The interval a compared result holds (`None` without one)."""
    interval = result["overall"].get("interval")
    return None if not interval else Interval(interval["estimate"], interval["low"], interval["high"])


def _device_type(model: Any) -> str:
    """The device type of a model's weights ("cpu" for a value that is not a module, such as a path or an engine)."""
    parameters = getattr(model, "parameters", None)
    first = next(parameters(), None) if callable(parameters) else None
    return first.device.type if first is not None else "cpu"
