"""The label history is append-only; the current label, the queue, undo and skip follow from it."""

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from apps.cases.models import Case
from apps.labeling import selectors
from apps.labeling.models import Label, LabelKind
from apps.labeling.services import case_skip, label_record, label_undo_last, queue_next
from apps.projects.models import Project
from tests.conftest import make_cases_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def cases(project, data_scientist, import_frame):
    frame = make_cases_frame(5, labeled=0.0)
    import_frame(project, data_scientist, frame)
    return list(Case.objects.filter(project=project).order_by("pk"))


def test_labeling_appends_a_row_and_moves_the_current_label(project, cases, clinician):
    case = cases[0]
    label = label_record(case=case, value="heart_failure", author=clinician)

    case.refresh_from_db()
    project.refresh_from_db()
    assert case.current_label == "heart_failure"
    assert (label.kind, label.author, label.value) == (
        LabelKind.LABELED,
        clinician,
        "heart_failure",
    )
    assert project.labels_version == 1
    assert project.last_labeled_at is not None


def test_a_second_label_is_a_relabel_and_keeps_the_first(project, cases, clinician, reviewer):
    case = cases[0]
    first = label_record(case=case, value="heart_failure", author=clinician)
    second = label_record(case=case, value="no_heart_failure", author=reviewer)

    assert second.kind == LabelKind.RELABELED
    assert list(Label.objects.filter(case=case).order_by("id")) == [first, second]
    first.refresh_from_db()
    assert first.value == "heart_failure"  # untouched
    case.refresh_from_db()
    assert case.current_label == "no_heart_failure"


def test_unknown_label_is_refused_and_nothing_is_written(project, cases, clinician):
    with pytest.raises(ValidationError, match="Unknown label 'flu'"):
        label_record(case=cases[0], value="flu", author=clinician)
    assert not Label.objects.exists()
    project.refresh_from_db()
    assert project.labels_version == 0


def test_undo_appends_a_row_that_restores_the_previous_value(project, cases, clinician, reviewer):
    case = cases[0]
    label_record(case=case, value="heart_failure", author=reviewer)
    mine = label_record(case=case, value="no_heart_failure", author=clinician)

    undo = label_undo_last(project=project, author=clinician)

    assert (undo.kind, undo.value, undo.undoes) == (LabelKind.UNDONE, "heart_failure", mine)
    assert Label.objects.filter(case=case).count() == 3
    case.refresh_from_db()
    assert case.current_label == "heart_failure"


def _next_case(project, user, role="clinician"):
    lease = queue_next(project=project, user=user, role=role)
    return lease.case if lease else None


def test_undo_of_a_first_label_gives_the_case_back_under_a_lease(project, cases, clinician):
    label_record(case=cases[0], value="heart_failure", author=clinician)
    assert _next_case(project, clinician) == cases[1]
    label_undo_last(project=project, author=clinician)
    # The case is the clinician's again; the one they held goes back to the queue.
    assert _next_case(project, clinician) == cases[0]
    cases[1].refresh_from_db()
    assert cases[1].queue_open == 1


def test_undo_refuses_when_someone_labeled_the_case_since(project, cases, clinician, reviewer):
    label_record(case=cases[0], value="heart_failure", author=clinician)
    label_record(case=cases[0], value="no_heart_failure", author=reviewer)
    with pytest.raises(ValidationError, match="labeled again after your label"):
        label_undo_last(project=project, author=clinician)
    assert Label.objects.count() == 2


def test_undo_with_nothing_to_undo(project, cases, clinician):
    with pytest.raises(ValidationError, match="no label to undo"):
        label_undo_last(project=project, author=clinician)


def test_queue_gives_unlabeled_cases_in_import_order_and_leaves_out_skips(
    project, cases, clinician, reviewer
):
    assert _next_case(project, clinician) == cases[0]
    case_skip(case=cases[0], user=clinician)
    assert _next_case(project, clinician) == cases[1]
    # A skip is personal: the reviewer still gets the first case.
    assert _next_case(project, reviewer, "reviewer") == cases[0]
    for case in cases[1:]:
        label_record(case=case, value="heart_failure", author=clinician)
    assert _next_case(project, clinician) is None


def test_snapshot_takes_each_cases_newest_label_at_the_watermark(project, cases, clinician):
    label_record(case=cases[0], value="heart_failure", author=clinician)
    label_record(case=cases[1], value="heart_failure", author=clinician)
    watermark = selectors.label_watermark(project_id=project.pk)
    label_record(case=cases[0], value="no_heart_failure", author=clinician)
    label_record(case=cases[2], value="no_heart_failure", author=clinician)

    before = selectors.label_snapshot(project_id=project.pk, watermark=watermark)
    now = selectors.label_snapshot(
        project_id=project.pk, watermark=selectors.label_watermark(project_id=project.pk)
    )
    assert dict(zip(before.case_ids.tolist(), before.values.tolist(), strict=True)) == {
        cases[0].pk: "heart_failure",
        cases[1].pk: "heart_failure",
    }
    assert dict(zip(now.case_ids.tolist(), now.values.tolist(), strict=True)) == {
        cases[0].pk: "no_heart_failure",
        cases[1].pk: "heart_failure",
        cases[2].pk: "no_heart_failure",
    }
    assert before.sha256() != now.sha256()
    again = selectors.label_snapshot(project_id=project.pk, watermark=watermark)
    assert again.sha256() == before.sha256()


def test_snapshot_leaves_out_withdrawn_labels_and_keeps_values_outside_the_classes(
    project, cases, clinician
):
    label_record(case=cases[0], value="heart_failure", author=clinician)
    label_undo_last(project=project, author=clinician)  # newest row of case 0: empty value
    kept = label_record(case=cases[1], value="no_heart_failure", author=clinician)
    snapshot = selectors.label_snapshot(
        project_id=project.pk, watermark=selectors.label_watermark(project_id=project.pk)
    )
    assert snapshot.case_ids.tolist() == [cases[1].pk]
    assert snapshot.label_ids.tolist() == [kept.pk]
    assert snapshot.values.tolist() == ["no_heart_failure"]
    watermark = selectors.label_watermark(project_id=project.pk)
    if connection.vendor == "postgresql":  # the fast path was the one taken
        assert selectors._label_snapshot_copy(project.pk, watermark, project.classes) is not None
    # A class dropped from the project after labels used it: the label is still read as given
    # (on PostgreSQL through the general query rather than the class-coded COPY). The label
    # rows cannot change (the database refuses), so the project's classes do.
    Project.objects.filter(pk=project.pk).update(classes=["heart_failure", "borderline"])
    snapshot = selectors.label_snapshot(
        project_id=project.pk, watermark=selectors.label_watermark(project_id=project.pk)
    )
    assert dict(zip(snapshot.case_ids.tolist(), snapshot.values.tolist(), strict=True)) == {
        cases[1].pk: "no_heart_failure",
    }
    assert snapshot.label_ids.tolist() == [kept.pk]
    if connection.vendor == "postgresql":
        project.refresh_from_db()
        assert selectors._label_snapshot_copy(project.pk, watermark, project.classes) is None


def test_current_label_always_equals_the_newest_history_row(project, cases, clinician, reviewer):
    label_record(case=cases[0], value="heart_failure", author=clinician)
    label_record(case=cases[0], value="no_heart_failure", author=reviewer)
    label_record(case=cases[1], value="heart_failure", author=clinician)
    label_undo_last(project=project, author=clinician)
    for case in Case.objects.filter(project=project):
        newest = Label.objects.filter(case=case).order_by("-id").first()
        assert case.current_label == (newest.value if newest else "")


def test_exports_hold_current_labels_and_the_full_history(project, cases, clinician, reviewer):
    label_record(case=cases[0], value="heart_failure", author=clinician)
    label_record(case=cases[0], value="no_heart_failure", author=reviewer)
    label_record(case=cases[1], value="heart_failure", author=clinician)

    current = selectors.current_labels_frame(project=project)
    history = selectors.label_history_frame(project=project)

    assert current[["external_id", "label", "labeled_by"]].values.tolist() == [
        ["p000000", "no_heart_failure", "rafael"],
        ["p000001", "heart_failure", "clara"],
    ]
    assert history[["external_id", "label", "kind", "author"]].values.tolist() == [
        ["p000000", "heart_failure", "labeled", "clara"],
        ["p000000", "no_heart_failure", "relabeled", "rafael"],
        ["p000001", "heart_failure", "labeled", "clara"],
    ]


def test_progress_counts_cases_per_class_and_my_labels(project, cases, clinician, reviewer):
    label_record(case=cases[0], value="heart_failure", author=clinician)
    label_record(case=cases[1], value="no_heart_failure", author=clinician)
    label_record(case=cases[2], value="heart_failure", author=reviewer)
    label_undo_last(project=project, author=clinician)  # cases[1] back to unlabeled

    progress = selectors.label_progress(project=project, user=clinician)

    assert (progress.total_cases, progress.labeled_cases) == (5, 2)
    assert progress.per_class == {"no_heart_failure": 0, "heart_failure": 2}
    assert (progress.labeled_by_user, progress.labeled_by_user_today) == (1, 1)
    assert progress.percent == 40


def test_undo_twice_goes_back_two_labels(project, cases, clinician):
    label_record(case=cases[0], value="heart_failure", author=clinician)
    label_record(case=cases[1], value="heart_failure", author=clinician)
    label_undo_last(project=project, author=clinician)
    second = label_undo_last(project=project, author=clinician)
    assert second.case == cases[0]
    assert set(
        Case.objects.filter(pk__in=[cases[0].pk, cases[1].pk]).values_list(
            "current_label", flat=True
        )
    ) == {""}


def test_a_label_on_a_case_changed_meanwhile_is_refused_with_who_changed_it(
    project, cases, clinician, reviewer
):
    from apps.labeling.services import StaleLabel

    seen = selectors.label_newest_id(case=cases[0])  # what the clinician's screen showed
    label_record(case=cases[0], value="no_heart_failure", author=reviewer, seen_label_id=seen)
    with pytest.raises(StaleLabel, match=r"changed by rafael .* now no_heart_failure"):
        label_record(case=cases[0], value="heart_failure", author=clinician, seen_label_id=seen)
    assert Label.objects.filter(case=cases[0]).count() == 1
    # Knowingly, against the current state, it is recorded as a relabel.
    current = selectors.label_newest_id(case=cases[0])
    label = label_record(
        case=cases[0], value="heart_failure", author=clinician, seen_label_id=current
    )
    assert label.kind == LabelKind.RELABELED


def test_the_same_label_sent_twice_is_stored_once(project, cases, clinician):
    first = label_record(case=cases[0], value="heart_failure", author=clinician)
    again = label_record(case=cases[0], value="heart_failure", author=clinician)
    assert again == first
    assert Label.objects.count() == 1
    project.refresh_from_db()
    assert project.labels_version == 1
    label_record(case=cases[0], value="no_heart_failure", author=clinician)  # a real change
    assert selectors.label_progress(project=project, user=clinician).labeled_by_user == 1
