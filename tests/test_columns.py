"""What Casebook makes of a real export's columns: keys from headers as people write them, a type
and a role per column from its values, and the problems named (stores nothing)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from apps.cases.columns import (
    MappingError,
    column_key,
    column_keys,
    preview_with,
    table_preview,
    table_sample,
)
from apps.cases.importing import ImportRejected

# A ward's export as a spreadsheet writes it: row numbers under an empty header, an id with
# letters, F/M, a missing age as NA, a dotted header, yes/no, tumour grades, day-month dates
# that cannot be told from month-day, a free-text note, and the outcome in words.
WARD_CSV = """\
,Patient ID,Sex (F/M),Âge,ph.ecog,Smoker,Grade,Admission date,Note,Outcome
1,P-001,F,71,1,yes,II,03/04/2021,"Dyspnoea on exertion, ankle oedema; furosemide",recurrence
2,P-002,M,64,0,no,I,05/04/2021,"Routine follow-up; echo unchanged from last year",none
3,P-003,F,NA,2,yes,III,11/04/2021,"Acute decompensation after missed diuretics",recurrence
4,P-004,M,80,,No,II,12/05/2021,"Chest pain resolved; troponin negative twice",none
"""


@pytest.mark.parametrize(
    "header, key",
    [
        ("ph.ecog", "ph_ecog"),
        ("Sex (F/M)", "sex_f_m"),
        ("Âge", "age"),
        ("  NT-proBNP  pg/mL ", "nt_probnp_pg_ml"),
        ("WEIGHT", "weight"),
        ("", "column_3"),
        ("   ", "column_3"),
        ("1st visit", "c_1st_visit"),
        ("créatinine (µmol/L)", "creatinine_mol_l"),
    ],
)
def test_a_header_gets_a_safe_key_and_keeps_its_name(header, key):
    assert column_key(header, 3) == key


def test_two_headers_that_give_one_key_are_refused_by_name():
    keys, problems = column_keys(["Age", "age", "AGE ", "sex"])
    assert keys == ["age", "age", "age", "sex"]
    assert [p.column for p in problems] == ["age", "AGE "]
    assert "'Age' and 'age' both become 'age'" in problems[0].message


def test_the_ward_export_is_read_as_a_clinician_wrote_it(tmp_path):
    path = tmp_path / "ward.csv"
    path.write_text(WARD_CSV, encoding="utf-8")
    preview = table_preview(table_sample(path, "csv"))
    by_name = {c.name: c for c in preview.columns}

    assert [c.name for c in preview.columns][:3] == ["", "Patient ID", "Sex (F/M)"]
    expected = {
        "": ("column_1", "number", "ignore"),  # row numbers
        "Patient ID": ("patient_id", "identifier", "id"),
        "Sex (F/M)": ("sex_f_m", "category", "feature"),
        "Âge": ("age", "number", "feature"),
        "ph.ecog": ("ph_ecog", "number", "feature"),
        "Smoker": ("smoker", "boolean", "feature"),
        "Grade": ("grade", "category", "feature"),
        "Admission date": ("admission_date", "date", "occurred_at"),
        "Note": ("note", "text", "context"),
        "Outcome": ("outcome", "category", "label"),
    }
    assert {n: (c.key, c.type, c.role) for n, c in by_name.items()} == expected
    assert by_name["Âge"].missing == 1 and by_name["ph.ecog"].missing == 1
    assert by_name["Grade"].categories == ["I", "II", "III"]
    assert by_name["Smoker"].distinct == 3  # yes, no, No: one boolean all the same
    assert preview.rows == 4
    # 03/04/2021 … 12/05/2021: every day is 12 or less, so the user is asked.
    assert by_name["Admission date"].date_formats == ["%d/%m/%Y", "%m/%d/%Y"]
    assert [p.column for p in preview.problems] == ["Admission date"]
    assert "day-month or month-day" in preview.problems[0].message


def test_a_date_that_only_one_order_fits_is_not_asked_about():
    frame = pd.DataFrame({"date": ["03/04/2021", "25/04/2021"], "x": ["1", "2"]})
    preview = table_preview(frame)
    assert preview.columns[0].type == "date"
    assert preview.columns[0].date_formats == ["%d/%m/%Y"]
    assert preview.problems == []
    iso = table_preview(pd.DataFrame({"occurred_at": ["2021-04-03", "2021-04-25 10:00:00"]}))
    assert iso.columns[0].type == "date" and iso.columns[0].role == "occurred_at"


def test_a_parquet_file_keeps_its_own_types(tmp_path):
    path = tmp_path / "ward.parquet"
    pd.DataFrame(
        {
            "external_id": ["a", "b", "c"],
            "age": [71.0, None, 80.0],
            "diabetic": [True, False, True],
            "admitted": pd.to_datetime(["2021-04-03", "2021-04-05", "2021-05-12"]),
            "label": ["hf", "none", "hf"],
        }
    ).to_parquet(path)
    preview = table_preview(table_sample(path, "parquet"))
    assert [(c.key, c.type, c.role) for c in preview.columns] == [
        ("external_id", "identifier", "id"),
        ("age", "number", "feature"),
        ("diabetic", "boolean", "feature"),
        ("admitted", "date", "occurred_at"),
        ("label", "category", "label"),
    ]
    assert preview.columns[1].missing == 1


def test_the_sample_is_bounded_and_a_broken_file_is_refused(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("id,x\n" + "".join(f"{i},{i % 7}\n" for i in range(50_000)))
    assert len(table_sample(path, "csv", rows=1_000)) == 1_000
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(ImportRejected):
        table_sample(ragged, "csv")


def test_the_user_s_mapping_changes_types_and_roles_and_answers_the_date_question(tmp_path):
    path = tmp_path / "ward.csv"
    path.write_text(WARD_CSV, encoding="utf-8")
    frame = table_sample(path, "csv")
    preview, mapping = preview_with(
        frame,
        {
            "columns": {"ph.ecog": "category", "": "number", "Note": "ignore"},
            "label_values": {"recurrence": "recurrence", "none": "no_recurrence"},
            "date_format": "%d/%m/%Y",
        },
    )
    by_name = {c.name: c for c in preview.columns}
    assert (by_name["ph.ecog"].type, by_name["ph.ecog"].role) == ("category", "feature")
    assert (by_name[""].type, by_name[""].role) == ("number", "feature")
    assert by_name["Note"].role == "ignore"
    assert preview.problems == []  # the date order was answered
    assert mapping["id_column"] == "Patient ID" and mapping["label_column"] == "Outcome"
    assert mapping["occurred_at_column"] == "Admission date"
    assert mapping["date_format"] == "%d/%m/%Y"
    assert mapping["columns"]["Note"] == "ignore" and mapping["columns"]["Smoker"] == "boolean"
    assert mapping["label_values"] == {"recurrence": "recurrence", "none": "no_recurrence"}

    # "number the rows": no id column; another column made the label.
    preview, mapping = preview_with(frame, {"id_column": None, "label_column": "Grade"})
    assert mapping["id_column"] is None and mapping["label_column"] == "Grade"
    assert {c.name: c.role for c in preview.columns}["Outcome"] == "feature"


@pytest.mark.parametrize(
    "mapping, named",
    [
        ({"id_column": "MRN"}, "no column 'MRN'"),
        ({"columns": {"Weight": "number"}}, "no column 'Weight'"),
        ({"columns": {"Grade": "ordinal"}}, "'ordinal' for 'Grade' is not a type"),
        ({"colums": {}}, "no field 'colums'"),
        ({"missing_values": "NA"}, "missing_values must be a list"),
        ({"date_format": "day first"}, "not a date format"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_a_wrong_mapping_is_refused_naming_what_is_wrong(tmp_path, mapping, named):
    path = tmp_path / "ward.csv"
    path.write_text(WARD_CSV, encoding="utf-8")
    with pytest.raises(MappingError, match=re.escape(named)):
        preview_with(table_sample(path, "csv"), mapping)
