"""The labeling screen in a real browser: keys label, undo and skip without reloading the page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.labeling.models import Label, LabelKind, Skip
from apps.labeling.services import cases_import
from tests.conftest import PASSWORD, make_cases_frame

# Playwright's sync API runs an event loop in this thread; Django's ORM would refuse to run here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing; the browser tests need Debian's chromium."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


def new_page(browser, width: int = 1366, height: int = 900):
    """A page in a browser context of its own (its own cookies: one person), closed with
    `page.context.close()`."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


@pytest.fixture
def page(browser):
    page = new_page(browser)
    yield page
    page.context.close()


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button.primary")
    assert "/accounts/login/" not in page.url, "login failed"


def shown_case_id(page) -> str:
    return page.locator(".case-id").inner_text().strip()


def wait_for_case_other_than(page, external_id: str) -> str:
    page.wait_for_function(
        "old => { const el = document.querySelector('.case-id');"
        " return el !== null && el.textContent.trim() !== old; }",
        arg=external_id,
    )
    return shown_case_id(page)


def press_and_wait(page, key: str) -> None:
    """Press a key and wait for the htmx request it starts to be answered and swapped in."""
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.keyboard.press(key)
    assert posted.value.status == 200, f"key {key!r} got HTTP {posted.value.status}"
    # The swap happens just after the response; the label buttons are re-enabled afterwards.
    page.wait_for_function("() => !document.querySelector('.htmx-request')")


@pytest.fixture
def queued_cases(transactional_db, project, clinician, data_scientist, tmp_path):
    path = tmp_path / "x.csv"
    make_cases_frame(5, seed=3, labeled=0.0).to_csv(path, index=False)
    result = cases_import(project=project, path=path, filename="x.csv", imported_by=data_scientist)
    assert result.labels == 0
    return project


def test_keyboard_labels_undoes_and_skips_without_reload(
    live_server, page, queued_cases, clinician
):
    project = queued_cases
    log_in(page, live_server.url, clinician.username)

    response = page.goto(f"{live_server.url}/projects/{project.pk}/label/")
    assert response is not None and response.status == 200
    first_id = shown_case_id(page)
    assert first_id

    navigations: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
    )
    page.evaluate("window.__casebookMarker = 'still-here'")

    # "2" is the second class, heart_failure.
    press_and_wait(page, "2")
    second_id = wait_for_case_other_than(page, first_id)
    assert second_id != first_id
    assert page.evaluate("window.__casebookMarker") == "still-here", "the page was reloaded"

    labels = list(Label.objects.filter(case__project=project, case__external_id=first_id))
    assert [(label.kind, label.value, label.author.username) for label in labels] == [
        (LabelKind.LABELED, "heart_failure", "clara")
    ]

    # "u" undoes that label: the case comes back, and the history grows by an `undone` row.
    press_and_wait(page, "u")
    page.wait_for_function(
        "id => document.querySelector('.case-id')?.textContent.trim() === id", arg=first_id
    )
    assert page.evaluate("window.__casebookMarker") == "still-here", "the page was reloaded"
    history = list(
        Label.objects.filter(case__project=project, case__external_id=first_id).order_by("id")
    )
    assert [(label.kind, label.value) for label in history] == [
        (LabelKind.LABELED, "heart_failure"),
        (LabelKind.UNDONE, ""),
    ]
    assert history[1].undoes_id == history[0].pk
    assert history[1].author.username == "clara"
    history[0].case.refresh_from_db()
    assert history[0].case.current_label == ""

    # "s" skips the shown case; another one takes its place.
    press_and_wait(page, "s")
    third_id = wait_for_case_other_than(page, first_id)
    assert third_id != first_id
    assert Skip.objects.filter(
        case__project=project, case__external_id=first_id, user=clinician
    ).exists()
    assert page.evaluate("window.__casebookMarker") == "still-here", "the page was reloaded"

    assert navigations == [], f"full page loads happened: {navigations}"


def test_non_member_gets_404_on_label_page(live_server, page, queued_cases, outsider):
    log_in(page, live_server.url, outsider.username)
    response = page.goto(f"{live_server.url}/projects/{queued_cases.pk}/label/")
    assert response is not None
    assert response.status == 404


def test_two_clinicians_side_by_side_are_shown_different_cases(
    live_server, browser, queued_cases, clinician, reviewer
):
    project = queued_cases
    pages = []
    for user in (clinician, reviewer):
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        pages.append(context.new_page())
        log_in(pages[-1], live_server.url, user.username)
    try:
        url = f"{live_server.url}/projects/{project.pk}/label/"
        for page in pages:
            page.goto(url)
        clara_case, rafael_case = (shown_case_id(page) for page in pages)
        assert clara_case and rafael_case and clara_case != rafael_case
        assert "Held for you until" in pages[0].content()
        # A reload shows the case one holds, not a new one.
        pages[1].reload()
        assert shown_case_id(pages[1]) == rafael_case
        # Clara labels hers; the next case she gets is neither hers nor Rafael's.
        press_and_wait(pages[0], "1")
        next_case = wait_for_case_other_than(pages[0], clara_case)
        assert next_case not in (clara_case, rafael_case)
    finally:
        for page in pages:
            page.context.close()


# --- Worklists: reranking by mouse and by keyboard ----------------------------------------


@pytest.fixture
def rerank_page(
    transactional_db, project, data_scientist, reviewer, import_frame, settings, tmp_path
):
    """A worklist of the deployed model's 8 highest risks, opened by the reviewer."""
    from apps.modeling import services as modeling_services
    from apps.modeling.models import Deployment, RunStatus, RunTrigger
    from apps.worklists.models import WorklistSource
    from apps.worklists.services import worklist_create

    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    import_frame(project, data_scientist, make_cases_frame(200, labeled=0.8, seed=7))
    project.refresh_from_db()
    run, _ = modeling_services.training_run_request(project=project, trigger=RunTrigger.MANUAL)
    run = modeling_services.training_run_execute(run_id=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    for deployment in Deployment.objects.filter(project=project, scores_applied_at__isnull=True):
        modeling_services.deployment_apply(deployment_id=deployment.pk)
    return worklist_create(
        project=project,
        name="Highest risk",
        risk_class="heart_failure",
        size=8,
        source=WorklistSource.UNLABELED,
        created_by=data_scientist,
    )


def shown_order(page) -> list[int]:
    return [
        int(c)
        for c in page.eval_on_selector_all(
            "#worklist-rows > li", "els => els.map(e => e.dataset.caseId)"
        )
    ]


def stored_session(worklist, user):
    from apps.worklists.models import RerankSession

    return RerankSession.objects.get(worklist=worklist, reviewer=user)


def test_dragging_a_case_with_the_mouse_stores_the_new_order(
    live_server, page, rerank_page, reviewer
):
    worklist = rerank_page
    log_in(page, live_server.url, reviewer.username)
    page.goto(f"{live_server.url}/projects/{worklist.project_id}/worklists/{worklist.pk}/")
    model_order = shown_order(page)
    assert model_order == stored_session(worklist, reviewer).order

    rows = page.locator("#worklist-rows > li")
    rows.nth(5).scroll_into_view_if_needed()
    source = rows.nth(5).locator(".wl-pos").bounding_box()
    target = rows.nth(1).locator(".wl-pos").bounding_box()
    assert source and target and target["y"] > 0, "both rows must be on screen"
    with page.expect_response(lambda r: r.url.endswith("/order/")) as saved:
        page.mouse.move(source["x"] + 8, source["y"] + 8)
        page.mouse.down()
        # A few steps up first: the list starts a drag only past a small distance.
        page.mouse.move(source["x"] + 8, source["y"] - 12, steps=4)
        page.mouse.move(target["x"] + 8, target["y"] + 4, steps=16)
        page.mouse.up()
    assert saved.value.status == 200
    page.wait_for_function("() => !document.querySelector('.htmx-request')")

    expected = [model_order[0], model_order[5], *model_order[1:5], *model_order[6:]]
    assert shown_order(page) == expected
    session = stored_session(worklist, reviewer)
    assert session.order == expected and session.revision == 1
    # The page says where the case came from: the model's sixth, now second, up 4 places.
    moved = page.locator(f'#worklist-rows > li[data-case-id="{model_order[5]}"]')
    assert moved.locator(".pos").inner_text() == "2"
    assert moved.locator(".delta").inner_text() == "▲4"
    assert "Saved" in page.locator("#save-state").inner_text()


def test_the_keyboard_moves_a_case_to_the_top_and_judges_it(
    live_server, page, rerank_page, reviewer
):
    from apps.worklists.models import CaseJudgment

    worklist = rerank_page
    log_in(page, live_server.url, reviewer.username)
    page.goto(f"{live_server.url}/projects/{worklist.project_id}/worklists/{worklist.pk}/")
    model_order = shown_order(page)
    navigations: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
    )

    for _ in range(4):  # the first press takes the first case, then down to the fourth
        page.keyboard.press("j")
    assert page.evaluate("document.activeElement.dataset.caseId") == str(model_order[3])
    with page.expect_response(lambda r: r.url.endswith("/order/")) as saved:
        page.keyboard.press("t")
    assert saved.value.status == 200
    with page.expect_response(lambda r: r.url.endswith("/judgments/")) as judged:
        page.keyboard.press("1")
    assert judged.value.status == 200
    page.wait_for_function("() => !document.querySelector('.htmx-request')")

    expected = [model_order[3], *model_order[:3], *model_order[4:]]
    assert shown_order(page) == expected
    assert stored_session(worklist, reviewer).order == expected
    judgments = list(CaseJudgment.objects.values_list("case_id", "value"))
    assert judgments == [(model_order[3], "actionable")]
    first = page.locator("#worklist-rows > li").first
    assert first.locator('[data-value="actionable"]').get_attribute("aria-pressed") == "true"

    # Shift+↓ moves it back down one place; "r" opens its reason, Enter saves it.
    with page.expect_response(lambda r: r.url.endswith("/order/")):
        page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("r")
    page.keyboard.type("BNP doubled since spring")
    with page.expect_response(lambda r: r.url.endswith("/judgments/")) as judged:
        page.keyboard.press("Enter")
    assert judged.value.status == 200
    page.wait_for_function("() => !document.querySelector('.htmx-request')")
    assert stored_session(worklist, reviewer).order[:2] == [model_order[0], model_order[3]]
    history = list(CaseJudgment.objects.order_by("id").values_list("value", "reason"))
    assert history == [("actionable", ""), ("actionable", "BNP doubled since spring")]
    assert navigations == [], f"full page loads happened: {navigations}"
