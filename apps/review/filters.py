"""What the review board filters on, parsed from a query string (the board's form, saved views,
the API), and written back as one."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from apps.projects.ids import id_parse

KINDS = {
    "issues": "Likely label errors",
    "misclassified": "Misclassified (model disagrees)",
    "all": "All labeled cases",
}


# The "Labeled by" choice of the labels that came from files: parentheses are not in any
# username, so it never names a person.
IMPORTED = "(imported)"

# More ranges than this is not a slice a reviewer reads, and each one is a condition per row.
MAX_FEATURE_RANGES = 10
# Query-string parameters of a feature range: min.<feature> and max.<feature>. The board's
# form adds a range through add_feature, add_min and add_max (a new range's name cannot be a
# parameter's name without script).
RANGE_MIN, RANGE_MAX = "min.", "max."


@dataclass
class FeatureRange:
    """min ≤ value ≤ max of one feature (either bound may be open); missing never matches."""

    name: str
    position: int
    min: float | None = None
    max: float | None = None


def _number(value: float) -> str:
    """A bound for the query string: 60 rather than 60.0, and no digit lost otherwise."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


@dataclass
class BoardFilters:
    kind: str = "issues"
    given: str = ""
    suggested: str = ""
    max_quality: float | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    annotator: str = ""
    month: str = ""  # YYYY-MM
    # Whose verdicts: a model version's number; None for the board's default (production's).
    version: int | None = None
    features: list[FeatureRange] = field(default_factory=list)
    # The ranges as typed, valid or not (name, min, max), for the form to show them again.
    range_inputs: list[tuple[str, str, str]] = field(default_factory=list)
    after: tuple[float, int] | None = None  # keyset: (label_quality, id) of the last row shown
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(
        cls, query: Mapping[str, Any], *, features: Mapping[str, int] | None = None
    ) -> BoardFilters:
        """From a query string (the board's form, the API); bad values are named, not fatal.

        `features` maps the project's feature names to their positions; a range on any other
        name is an error."""
        found = cls()
        found.kind = query.get("kind") or "issues"
        if found.kind not in KINDS:
            found.errors.append(f"Unknown kind {found.kind!r}; use {', '.join(KINDS)}.")
            found.kind = "issues"
        found.given = query.get("given", "")
        found.suggested = query.get("suggested", "")
        found.annotator = query.get("annotator", "")
        found.month = query.get("month", "")
        if found.month:
            try:
                datetime.strptime(found.month, "%Y-%m")
            except ValueError:
                found.errors.append(f"Month {found.month!r} is not YYYY-MM.")
                found.month = ""
        for name in ("max_quality", "min_confidence", "max_confidence"):
            raw = query.get(name, "")
            if raw == "":
                continue
            try:
                value = float(raw)
            except ValueError:
                found.errors.append(f"{name.replace('_', ' ')} {raw!r} is not a number.")
                continue
            if not 0 <= value <= 1:
                found.errors.append(f"{name.replace('_', ' ')} must be between 0 and 1.")
                continue
            setattr(found, name, value)
        found._ranges_from(query, features or {})
        version = query.get("version", "")
        if version:
            number = id_parse(version)
            if number is not None:
                found.version = number
            else:
                found.errors.append(f"Version {version!r} is not a version number.")
        after = query.get("after", "")
        if after:
            try:
                quality, _, last_id = after.partition(",")
                found.after = (float(quality), int(last_id))
            except ValueError:
                found.errors.append("The page position is not valid; showing the first page.")
        return found

    def _ranges_from(self, query: Mapping[str, Any], features: Mapping[str, int]) -> None:
        bounds: dict[str, dict[str, str]] = {}
        for key in query:
            for prefix, bound in ((RANGE_MIN, "min"), (RANGE_MAX, "max")):
                if key.startswith(prefix):
                    bounds.setdefault(key[len(prefix) :], {})[bound] = query.get(key, "").strip()
        added = query.get("add_feature", "")
        added_bounds = {b: query.get(f"add_{b}", "").strip() for b in ("min", "max")}
        if added:
            if not any(added_bounds.values()):
                self.errors.append(f"Give {added} a minimum, a maximum or both.")
            bounds[added] = added_bounds  # the new range replaces an earlier one of the feature
        elif any(added_bounds.values()):
            self.errors.append("Choose the feature of the new range.")
        for name, raw in bounds.items():
            if not any(raw.values()):
                continue  # both bounds cleared in the form: the range is removed
            self.range_inputs.append((name, raw.get("min", ""), raw.get("max", "")))
            if name not in features:
                self.errors.append(f"No feature {name!r} in this project.")
                continue
            found = FeatureRange(name=name, position=features[name])
            for bound in ("min", "max"):
                text = raw.get(bound, "")
                if text == "":
                    continue
                try:
                    value = float(text)
                except ValueError:
                    self.errors.append(f"{name}: the {bound}imum {text!r} is not a number.")
                    continue
                if not math.isfinite(value):
                    self.errors.append(f"{name}: the {bound}imum must be a finite number.")
                    continue
                setattr(found, bound, value)
            if found.min is None and found.max is None:
                continue
            if found.min is not None and found.max is not None and found.min > found.max:
                self.errors.append(
                    f"{name}: the minimum {_number(found.min)} is above the maximum "
                    f"{_number(found.max)}."
                )
                continue
            self.features.append(found)
        if len(self.features) > MAX_FEATURE_RANGES:
            self.errors.append(
                f"At most {MAX_FEATURE_RANGES} feature ranges at once, not {len(self.features)}."
            )
            del self.features[MAX_FEATURE_RANGES:]

    def query_pairs(self, **changes: Any) -> list[tuple[str, str]]:
        """The filters as query-string pairs (without the empty ones), feature ranges last."""
        values = {
            "kind": self.kind,
            "given": self.given,
            "suggested": self.suggested,
            "max_quality": "" if self.max_quality is None else self.max_quality,
            "min_confidence": "" if self.min_confidence is None else self.min_confidence,
            "max_confidence": "" if self.max_confidence is None else self.max_confidence,
            "annotator": self.annotator,
            "month": self.month,
            "version": "" if self.version is None else self.version,
        }
        ranges = {}
        for r in self.features:
            if r.min is not None:
                ranges[RANGE_MIN + r.name] = _number(r.min)
            if r.max is not None:
                ranges[RANGE_MAX + r.name] = _number(r.max)
        merged = {**values, **ranges, **changes}
        return [(k, str(v)) for k, v in merged.items() if v not in ("", None)]

    def query_string(self, **changes: Any) -> str:
        return urlencode(self.query_pairs(**changes))

    def without_range(self, name: str) -> str:
        """The query string of these filters less one feature's range."""
        return urlencode(
            [(k, v) for k, v in self.query_pairs() if k not in (RANGE_MIN + name, RANGE_MAX + name)]
        )
