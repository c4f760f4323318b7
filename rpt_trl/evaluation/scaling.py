r"""Scaling curves: fit next-token accuracy against training compute, P(C) = A / C^alpha + P* (paper, Section 4.3).

The paper fits this law per split over checkpoints at steps 100..1200 (R^2 = 0.995 / 0.997 / 0.989 for Easy /
Medium / Hard). Accuracy rises with compute, so the fitted `A` is negative and `P*` is the accuracy the curve
approaches.

The fit needs no optimiser library: for a fixed `alpha` the law is linear in `A` and `P*`, which ordinary least
squares solves exactly; `alpha` is then found by a log-spaced scan refined with golden-section search on the
residual. Compute is rescaled by its smallest value while fitting (so `C^alpha` stays representable) and `A` is
reported on the original scale.

Compute per checkpoint can be given, or estimated from a checkpoint's `trainer_state.json` as
`6 * parameters * tokens` (the usual training-FLOPs estimate; tokens are the `num_tokens` that GRPO logs, prompts and
completions together).
"""

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..plotting import pyplot


ALPHA_RANGE = (1e-3, 5.0)


class ScalingFitError(ValueError):
    """The points do not determine a power-law fit (too few, flat, or not a power law)."""


@dataclass
class PowerLawFit:
    """P(C) = A / C^alpha + P*, with its coefficient of determination on the fitted points."""

    A: float
    alpha: float
    P_star: float
    r_squared: float
    num_points: int
    alpha_at_bound: bool

    def predict(self, compute: float) -> float:
        return self.A / compute**self.alpha + self.P_star

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _least_squares(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Slope, intercept and residual sum of squares of y ~ slope * x + intercept."""
    n = len(x)
    mean_x, mean_y = sum(x) / n, sum(y) / n
    sxx = sum((a - mean_x) ** 2 for a in x)
    if sxx == 0:
        return 0.0, mean_y, sum((b - mean_y) ** 2 for b in y)
    slope = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y)) / sxx
    intercept = mean_y - slope * mean_x
    return slope, intercept, sum((b - slope * a - intercept) ** 2 for a, b in zip(x, y))


def fit_power_law(compute: Sequence[float], accuracy: Sequence[float], *, min_points: int = 4) -> PowerLawFit:
    """Fit P(C) = A / C^alpha + P* by least squares.

    Args:
        compute: Training compute per checkpoint (any positive unit; FLOPs from [`compute_from_trainer_state`]).
        accuracy: Accuracy per checkpoint.
        min_points: Fewest points accepted; the law has three parameters, so four leave one degree of freedom.

    Raises:
        ScalingFitError: With fewer than `min_points` points, non-positive or repeated-only compute, or accuracy that
            does not change (a flat line has no power law).

    Example:
        >>> fit = fit_power_law([1, 2, 4, 8, 16], [0.1 + 0.3 * (1 - c**-0.5) for c in [1, 2, 4, 8, 16]])
        >>> round(fit.alpha, 3), round(fit.P_star, 3), fit.r_squared > 0.999
        (0.5, 0.4, True)
    """
    if len(compute) != len(accuracy):
        raise ScalingFitError(f"Got {len(compute)} compute values and {len(accuracy)} accuracies.")
    if len(compute) < min_points:
        raise ScalingFitError(
            f"A power-law fit has three parameters: it needs at least {min_points} checkpoints, got {len(compute)}."
        )
    if any(not c > 0 for c in compute):
        raise ScalingFitError(f"Compute must be positive, got {list(compute)}.")
    if len(set(compute)) < 3:
        raise ScalingFitError("The checkpoints need at least three distinct compute values.")
    mean = sum(accuracy) / len(accuracy)
    total = sum((a - mean) ** 2 for a in accuracy)
    if total <= 1e-12 * max(1.0, mean**2):
        raise ScalingFitError(f"Accuracy is flat ({mean:.4f} at every checkpoint): there is no curve to fit.")

    scale = min(compute)
    scaled = [c / scale for c in compute]

    def residual(alpha: float) -> float:
        return _least_squares([c**-alpha for c in scaled], accuracy)[2]

    low, high = ALPHA_RANGE
    grid = [low * (high / low) ** (i / 200) for i in range(201)]
    best = min(range(len(grid)), key=lambda i: residual(grid[i]))
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = right - golden * (right - left), left + golden * (right - left)
        if residual(a) < residual(b):
            right = b
        else:
            left = a
    alpha = (left + right) / 2
    slope, intercept, rss = _least_squares([c**-alpha for c in scaled], accuracy)
    return PowerLawFit(
        A=slope * scale**alpha,
        alpha=alpha,
        P_star=intercept,
        r_squared=1.0 - rss / total,
        num_points=len(compute),
        alpha_at_bound=best in (0, len(grid) - 1),
    )


def count_parameters(model_dir: str | Path) -> int:
    """Number of parameters stored in a model directory's safetensors files (read from their headers only)."""
    import struct

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"No .safetensors files in {model_dir}; pass the parameter count instead.")
    total = 0
    for file in files:
        with open(file, "rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        for name, entry in header.items():
            if name != "__metadata__":
                total += math.prod(entry["shape"])
    return total


def compute_from_trainer_state(checkpoint_dir: str | Path, num_parameters: int | None = None) -> float:
    """Training compute of a checkpoint, `6 * parameters * tokens`, from its `trainer_state.json`.

    Args:
        checkpoint_dir: A `checkpoint-<step>` directory written by the trainer.
        num_parameters: Model size; counted from the checkpoint's safetensors files when `None`.

    Raises:
        ValueError: If the training log has no token count.
    """
    state = json.loads((Path(checkpoint_dir) / "trainer_state.json").read_text())
    tokens = [entry["num_tokens"] for entry in state.get("log_history", []) if "num_tokens" in entry]
    tokens = tokens or ([state["num_input_tokens_seen"]] if state.get("num_input_tokens_seen") else [])
    if not tokens:
        raise ValueError(
            f"{checkpoint_dir}/trainer_state.json logs no 'num_tokens' or 'num_input_tokens_seen'; give the compute "
            "per checkpoint instead."
        )
    if num_parameters is None:
        num_parameters = count_parameters(checkpoint_dir)
    return 6.0 * num_parameters * float(tokens[-1])


def fit_splits(points: Sequence[tuple[float, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Fit every split that all points report. `points` are `(compute, {split: accuracy})`.

    A split whose fit fails gets `{"error": message}` instead of the fit.
    """
    splits = [s for s in points[0][1] if all(s in p[1] for p in points)] if points else []
    fits: dict[str, dict[str, Any]] = {}
    for split in splits:
        try:
            fits[split] = fit_power_law([c for c, _ in points], [p[split] for _, p in points]).to_dict()
        except ScalingFitError as error:
            fits[split] = {"error": str(error)}
    return fits


def plot_scaling(points: Sequence[tuple[float, dict[str, float]]], fits: dict[str, dict[str, Any]], path: str | Path):
    """Save the points and fitted curves (one colour per split) as a PNG, compute on a log axis."""
    plt = pyplot()

    figure, axis = plt.subplots(figsize=(6, 4))
    compute = [c for c, _ in points]
    low, high = min(compute), max(compute)
    curve = [low * (high / low) ** (i / 100) for i in range(101)] if high > low else [low]
    for split, fit in fits.items():
        ys = [100 * p[split] for _, p in points]
        (line,) = axis.plot(compute, ys, "o", label=split)
        if "error" not in fit:
            law = PowerLawFit(**fit)
            axis.plot(curve, [100 * law.predict(c) for c in curve], "-", color=line.get_color(),
                      label=f"{split} fit: alpha={law.alpha:.2f}, P*={100 * law.P_star:.1f}, R²={law.r_squared:.3f}"
                            + (" (alpha at the search bound)" if law.alpha_at_bound else ""))  # fmt: skip
    axis.set_xscale("log")
    axis.set(xlabel="training compute (FLOPs)", ylabel="next-token accuracy (%)", title="P(C) = A / C^alpha + P*")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
