"""The data frame of the golden Arrow payload (`tests/data/frame.arrow`), and how to remake it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

GOLDEN_FRAME = Path(__file__).parent / "data" / "frame.arrow"
"""A `"pandas-arrow"` payload written with pandas 3.1 and pyarrow 26, for later ones to read."""


def golden_frame() -> pd.DataFrame:
    """The frame in `GOLDEN_FRAME`: an index name, categoricals, time zones, nullable numbers."""
    return pd.DataFrame(
        {
            "n": np.arange(4, dtype=np.int32),
            "x": [0.5, 1.5, np.nan, 3.5],
            "cat": pd.Categorical(["b", "a", "b", "c"], categories=["c", "b", "a"], ordered=True),
            "when": pd.date_range("2024-03-30", periods=4, freq="D", tz="Europe/Paris"),
            "maybe": pd.array([1, None, 3, None], dtype="Int64"),
            "text": ["é", "b", "", "d"],
        },
        index=pd.Index([10, 20, 30, 40], name="id"),
    )


if __name__ == "__main__":  # python tests/format_support.py: rewrites the golden payload
    from taskstash.store.formats import PandasArrowSerializer

    GOLDEN_FRAME.write_bytes(PandasArrowSerializer().dumps(golden_frame()))
