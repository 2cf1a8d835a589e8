"""Turning label tables into files people open in spreadsheets."""

import io

import pandas as pd

# A cell starting with one of these is run as a formula by spreadsheet programs (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot start a formula: such cells get a leading apostrophe."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            values = safe[column].astype("string")
            risky = values.str.startswith(FORMULA_STARTS).fillna(False)
            safe[column] = safe[column].where(~risky, "'" + values)
    return safe


def frame_to_csv(frame: pd.DataFrame) -> bytes:
    return spreadsheet_safe(frame).to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S%z").encode()


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
