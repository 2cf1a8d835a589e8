"""The review board in a real browser: select-all sends a page of cases back, and the table
stays inside its card at 1366 px and on a phone."""

from __future__ import annotations

import pytest

from apps.labeling.models import LabelTask, TaskKind
from apps.review import services
from tests.test_browser import browser, log_in, new_page
from tests.test_review import _wdbc_load

pytestmark = pytest.mark.browser

# Every pill and cell of the board's table, measured against the card that holds it.
OUTSIDE_THE_CARD = """() => {
  const card = document.querySelector('#board-table').getBoundingClientRect();
  const cells = [...document.querySelectorAll('#board-table tbody td, #board-table .pill')];
  return cells.filter((el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && (box.right > card.right + 0.5 || box.left < card.left - 0.5);
  }).map((el) => el.textContent.trim()).slice(0, 5);
}"""


@pytest.fixture
def board(transactional_db, settings, tmp_path):
    project, _, users, version = _wdbc_load(settings, tmp_path)
    services.label_issues_find(version_id=version.pk)
    return project, users


def test_select_all_sends_the_page_back_and_badges_stay_in_the_card(
    live_server,
    browser,
    board,
):
    project, users = board
    page = new_page(browser, 1366, 900)
    context = page.context
    try:
        log_in(page, live_server.url, users["reviewer"].username)
        page.goto(f"{live_server.url}/projects/{project.pk}/review/?kind=all")
        rows = page.locator("#board-table tbody input[name=case]")
        assert rows.count() == 50
        header = page.locator("input[data-select-page=case]")
        header.check()
        assert page.locator("#board-table tbody input[name=case]:checked").count() == 50
        # One case left out: the header says "some", not "all".
        rows.nth(3).uncheck()
        assert header.evaluate("box => box.indeterminate && !box.checked")
        rows.nth(3).check()
        assert header.evaluate("box => box.checked && !box.indeterminate")
        page.fill("input[name=reason]", "the model disagrees strongly")
        with page.expect_navigation():
            page.click("fieldset.relabel button.primary")
        assert "Opened 50 relabel tasks" in page.content()
        assert LabelTask.objects.filter(project=project, kind=TaskKind.RELABEL).count() == 50
        # Every row now carries "relabel asked" beside "likely wrong": all inside the card.
        assert page.locator("#board-table .pill", has_text="relabel asked").count() == 50
        assert page.evaluate(OUTSIDE_THE_CARD) == []
    finally:
        context.close()


def test_on_a_phone_every_column_of_the_board_is_readable(
    live_server,
    browser,
    board,
):
    project, users = board
    page = new_page(browser, 390, 844)
    context = page.context
    try:
        log_in(page, live_server.url, users["reviewer"].username)
        page.goto(f"{live_server.url}/projects/{project.pk}/review/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.evaluate(OUTSIDE_THE_CARD) == []
        first = page.locator("#board-table tbody tr").first
        text = first.inner_text()
        assert "imported" in text and "likely wrong" in text
        # Each value is named by the label drawn before it (the header row is not shown).
        labels = first.locator("td").evaluate_all(
            "cells => cells.map((c) => getComputedStyle(c, '::before').content)"
        )
        for label in (
            "Occurred",
            "Given",
            "Model suggests",
            "Conf.",
            "Label quality",
            "Labeled by",
        ):
            assert f'"{label} "' in labels, labels
        # Each of the row's cells is on the screen, not hidden to the right of it.
        boxes = first.locator("td").evaluate_all(
            "cells => cells.map((c) => c.getBoundingClientRect().right)"
        )
        assert boxes and max(boxes) <= 390
        assert page.locator("input[data-select-page=case]").is_visible()
    finally:
        context.close()
