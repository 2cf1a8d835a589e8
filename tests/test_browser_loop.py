"""The review loop in a real browser, by keyboard: the board sends a case back, a clinician
relabels it blind, the disagreement goes to a reviewer who settles it. And the labeling screen
under back, forward and reload."""

from __future__ import annotations

import pytest

from apps.labeling.models import Label, LabelKind, LabelTask, TaskKind, TaskStatus
from apps.labeling.services import label_record
from apps.review.models import LabelIssue
from tests.conftest import PASSWORD
from tests.test_browser import (
    browser,
    log_in,
    new_page,
    page,
    press_and_wait,
    queued_cases,
    shown_case_id,
    wait_for_case_other_than,
)
from tests.test_browser_review import board

pytestmark = pytest.mark.browser


def _open_as(browser, base_url: str, username: str):
    page = new_page(browser)
    log_in(page, base_url, username)
    return page


def test_board_to_blind_relabel_to_adjudication_by_keyboard(live_server, browser, board):
    project, _ = board
    pages = []
    try:
        # The reviewer sends the most likely wrong label back to the clinicians' pool.
        reviewer = _open_as(browser, live_server.url, "reviewer")
        pages.append(reviewer)
        reviewer.goto(f"{live_server.url}/projects/{project.pk}/review/")
        first = reviewer.locator("input[name=case]").first
        case_id = int(first.get_attribute("value"))
        first.check()
        reviewer.fill("input[name=reason]", "The cell sizes do not fit this label")
        with reviewer.expect_navigation():
            reviewer.click("text=Open relabel tasks")
        assert "Opened 1 relabel task" in reviewer.content()
        issue = LabelIssue.objects.filter(case_id=case_id).order_by("-id").first()
        questioned = issue.given_label
        other = next(c for c in project.classes if c != questioned)

        # A clinician gets the task from the queue, blind: the label in question is not shown.
        clinician = _open_as(browser, live_server.url, "clinician2")
        pages.append(clinician)
        clinician.goto(f"{live_server.url}/projects/{project.pk}/label/")
        assert clinician.locator(f'[data-case-id="{case_id}"]').count() == 1
        panel = clinician.locator("#case-panel").inner_text()
        assert "Relabel blind" in panel and "Current label" not in panel
        assert "scientist" not in panel  # who gave the questioned label
        key = str(project.classes.index(other) + 1)
        press_and_wait(clinician, key)
        relabel = Label.objects.filter(case_id=case_id).order_by("-id").first()
        assert (relabel.kind, relabel.value, relabel.author.username) == (
            LabelKind.RELABELED,
            other,
            "clinician2",
        )
        task = LabelTask.objects.get(case_id=case_id, kind=TaskKind.ADJUDICATE)
        assert task.status == TaskStatus.OPEN

        # The reviewer settles the disagreement from the labeling screen, by keyboard.
        reviewer.goto(f"{live_server.url}/projects/{project.pk}/label/?task={task.pk}")
        panel = reviewer.locator("#case-panel").inner_text()
        assert "Adjudication" in panel and "clinician2" in panel
        press_and_wait(reviewer, str(project.classes.index(questioned) + 1))
        task.refresh_from_db()
        assert task.status == TaskStatus.DONE
        settled = Label.objects.filter(case_id=case_id).order_by("-id").first()
        assert (settled.kind, settled.value, settled.author.username) == (
            LabelKind.ADJUDICATED,
            questioned,
            "reviewer",
        )
    finally:
        for opened in pages:
            opened.context.close()


def test_back_forward_and_reload_show_the_case_held_now(live_server, page, queued_cases, clinician):
    project = queued_cases
    log_in(page, live_server.url, clinician.username)
    label_url = f"{live_server.url}/projects/{project.pk}/label/"
    page.goto(label_url)
    first = shown_case_id(page)
    press_and_wait(page, "1")
    second = wait_for_case_other_than(page, first)

    # Away to the project page and back: the screen holds the second case, and a key labels it.
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.go_back()
    page.wait_for_selector(".case-id")
    assert shown_case_id(page) == second
    page.go_forward()
    page.go_back()
    page.wait_for_selector(".case-id")
    assert shown_case_id(page) == second
    press_and_wait(page, "2")
    third = wait_for_case_other_than(page, second)

    # Correct the first case from "My recent labels": afterwards the address is the queue's
    # again, so a reload shows the case held, not the corrected one.
    with page.expect_navigation():
        page.click(f".recent a:text-is('{first}')")
    assert "?case=" in page.url and shown_case_id(page) == first
    press_and_wait(page, "2")
    assert "?case=" not in page.url
    held = shown_case_id(page)
    assert held != first
    page.reload()
    assert shown_case_id(page) == held
    corrected = Label.objects.filter(case__external_id=first).order_by("-id").first()
    assert (corrected.kind, corrected.value) == (LabelKind.RELABELED, project.classes[1])
    assert third


def test_a_stale_blind_relabel_in_the_browser_names_no_label(
    live_server, page, queued_cases, clinician, reviewer
):
    """Someone labels the case while the clinician looks at a blind relabel of it: the key press
    is refused with a message that names neither the label nor its author."""
    from apps.accounts.models import User
    from apps.cases.models import Case
    from apps.labeling.services import task_open
    from apps.projects.models import Role
    from apps.projects.services import membership_set

    project = queued_cases
    case = Case.objects.filter(project=project).order_by("pk").first()
    label_record(case=case, value="heart_failure", author=clinician)
    task_open(case=case, kind=TaskKind.RELABEL, created_by=reviewer, reason="look again")
    User.objects.create_user(username="ben", password=PASSWORD)
    membership_set(project=project, username="ben", role=Role.CLINICIAN)
    log_in(page, live_server.url, "ben")
    page.goto(f"{live_server.url}/projects/{project.pk}/label/")
    assert shown_case_id(page) == case.external_id
    case.refresh_from_db()
    label_record(case=case, value="no_heart_failure", author=clinician)  # a correction

    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.keyboard.press("2")
    assert posted.value.status == 409
    page.wait_for_selector("p.msg.error")
    message = page.locator("p.msg.error").inner_text()
    assert "labeled by someone else" in message
    assert "clara" not in message and "heart_failure" not in message
    assert "clara" not in page.locator("#case-panel").inner_text()
    press_and_wait(page, "2")
    assert Label.objects.filter(case=case, author__username="ben").count() == 1
