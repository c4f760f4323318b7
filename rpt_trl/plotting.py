"""Matplotlib for the package's charts, set up once."""

from typing import Any


def pyplot() -> Any:
    """`matplotlib.pyplot` on the file-only Agg backend: charts are written as PNGs, on machines without a display
    too. Imported on first use, so that `import rpt_trl` does not load matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
