"""Exports are safe to open in a spreadsheet."""

import pandas as pd

from apps.labeling.exports import frame_to_csv, spreadsheet_safe


def test_cells_that_would_run_as_formulas_are_neutralised():
    frame = pd.DataFrame(
        {
            "external_id": ["=cmd|' /C calc'!A0", "p1", "+1", "@SUM(A1)", "-2", None],
            "score": [1.0, -2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    safe = spreadsheet_safe(frame)
    assert safe["external_id"].tolist()[:5] == [
        "'=cmd|' /C calc'!A0",
        "p1",
        "'+1",
        "'@SUM(A1)",
        "'-2",
    ]
    assert pd.isna(safe["external_id"].iloc[5])
    assert safe["score"].tolist() == frame["score"].tolist()  # numbers are left alone
    assert frame["external_id"].iloc[0].startswith("=")  # the input is not changed
    assert b"'=cmd" in frame_to_csv(frame)
