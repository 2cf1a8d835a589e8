"""The screens at a phone's size (390×844) and a laptop's (1366×900): the label buttons are on
screen without scrolling, every top-bar link is reachable, no page scrolls sideways, and the queue
page's tables fit their cards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apps.labeling.models import Label, LabelKind
from apps.labeling.services import cases_import, queue_next, queue_refresh, queue_settings_change
from apps.projects.models import Role
from apps.projects.services import FeatureSpec, membership_set, project_create
from tests.conftest import PASSWORD
from tests.test_browser import (
    TIMEOUT_MS,
    browser,
    log_in,
    press_and_wait,
    shown_case_id,
    wait_for_case_other_than,
)
from tests.world import build_world

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 900}


@pytest.fixture
def open_page(browser):
    """A page of its own browser context at a given viewport, closed at the end of the test."""
    contexts = []

    def open_(viewport: dict[str, int]):
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def ward(transactional_db, clinician, data_scientist, tmp_path):
    """A project whose cases have 24 features in three groups, as a real cohort has: more than
    a phone shows at once."""
    groups = {"Vitals": "mmHg", "Labs": "mg/dL", "History": "years"}
    features = [
        FeatureSpec(name=f"{group.lower()}_{i:02d}", unit=unit, group=group)
        for group, unit in groups.items()
        for i in range(8)
    ]
    project = project_create(
        name="Cardiology ward, readmissions within thirty days",
        classes=["no_heart_failure", "heart_failure", "unclear"],
        features=features,
        created_by=data_scientist,
    )
    membership_set(project=project, username=clinician.username, role=Role.CLINICIAN)
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"external_id": [f"w{i:04d}" for i in range(6)]})
    for feature in features:
        frame[feature.name] = rng.normal(100, 20, len(frame)).round(2)
    path = tmp_path / "ward.csv"
    frame.to_csv(path, index=False)
    cases_import(project=project, path=path, filename="ward.csv", imported_by=data_scientist)
    return project


def _boxes_in_viewport(page, selector: str) -> list[str]:
    """The elements matching `selector` that are not wholly inside the viewport, as text."""
    return page.evaluate(
        """selector => [...document.querySelectorAll(selector)].flatMap(e => {
             const r = e.getBoundingClientRect();
             const inside = r.width > 0 && r.top >= 0 && r.left >= 0
               && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
             return inside ? [] : [`${e.textContent.trim()} at ${JSON.stringify(r)}`];
           })""",
        selector,
    )


def _sideways(page) -> int:
    """By how many pixels the page scrolls sideways (0 when it does not)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_on_a_phone_the_label_buttons_are_on_screen_and_a_key_still_labels(
    live_server, open_page, ward, clinician
):
    page = open_page(PHONE)
    log_in(page, live_server.url, clinician.username)
    page.goto(f"{live_server.url}/projects/{ward.pk}/label/")
    first_id = shown_case_id(page)
    # The case is longer than the screen: without care the buttons would be below the fold.
    assert page.evaluate("document.documentElement.scrollHeight") > PHONE["height"] * 1.5

    assert page.locator(".label-button").count() == 3
    assert _boxes_in_viewport(page, ".label-button") == []
    assert _boxes_in_viewport(page, "#skip-button, #undo-button") == []
    assert _sideways(page) == 0

    # Halfway down the features the buttons are still there; "1" labels, and the next case
    # starts at its top with its buttons on screen again.
    page.evaluate("window.scrollTo(0, 700)")
    assert _boxes_in_viewport(page, ".label-button") == []
    press_and_wait(page, "1")
    second_id = wait_for_case_other_than(page, first_id)
    assert page.evaluate("window.scrollY") == 0
    assert _boxes_in_viewport(page, ".label-button") == []
    labels = Label.objects.filter(case__project=ward, case__external_id=first_id)
    assert [(label.kind, label.value, label.author) for label in labels] == [
        (LabelKind.LABELED, "no_heart_failure", clinician)
    ]

    # A tap works as a key does.
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.locator(".label-button", has_text="unclear").click()
    assert posted.value.status == 200
    wait_for_case_other_than(page, second_id)
    assert Label.objects.get(case__project=ward, case__external_id=second_id).value == "unclear"


@pytest.mark.parametrize("path", ["/", "/projects/{pk}/", "/projects/{pk}/label/"])
def test_on_a_phone_every_top_bar_link_is_on_screen(
    live_server, open_page, ward, data_scientist, path
):
    # The longest bar: a long project name, and a data scientist's link to the admin.
    page = open_page(PHONE)
    log_in(page, live_server.url, data_scientist.username)
    page.goto(live_server.url + path.format(pk=ward.pk))

    assert page.locator(".topbar button", has_text="Log out").is_visible()
    assert _boxes_in_viewport(page, ".topbar a, .topbar button") == []
    assert page.locator(".topbar a", has_text="Admin").is_visible()
    assert _sideways(page) == 0


def _world_pages(world) -> dict[str, str]:
    p = world.params
    project = f"/projects/{p['project_id']}"
    return {
        "home": "/",
        "project": f"{project}/",
        "new project": "/projects/new/",
        "settings": f"{project}/settings/",
        "members": f"{project}/members/",
        "label": f"{project}/label/",
        "import": f"{project}/import/",
        "queue": f"{project}/queue/",
        "agreement": f"{project}/agreement/",
        "models": f"{project}/models/",
        "compare": f"{project}/models/compare/",
        "run": f"{project}/runs/{p['run_id']}/",
        "features": f"{project}/features/",
        "feature": f"{project}/features/{p['feature_id']}/",
        "worklists": f"{project}/worklists/",
        "worklist agreement": f"{project}/worklists/agreement/",
        "worklist": f"{project}/worklists/{p['worklist_id']}/",
        "mentions": "/projects/mentions/",
        # The review board is left to its own layout tests.
    }


@pytest.fixture
def world(transactional_db, settings, tmp_path):
    """tests/world.py's project (a trained, deployed model, a worklist, a relabel task, a
    derived feature), committed so the live server sees it; with a queue ranked by a mix of
    uncertainty and random cases, a settings history with a reason, and a case held."""
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    built = build_world(tmp_path)
    admin = built.users[Role.ADMIN]
    admin.set_password(PASSWORD)  # log_in's password
    admin.save(update_fields=["password"])
    queue_settings_change(
        project=built.project,
        changed_by=admin,
        strategy="mix",
        mix_base="uncertainty",
        random_share=0.2,
        overlap_share=0.1,
        overlap_labels=2,
        note="A fifth at random keeps the labeled set like the ward; a tenth labeled twice.",
    )
    queue_refresh(project_id=built.project.pk)
    queue_next(project=built.project, user=built.users[Role.CLINICIAN], role=Role.CLINICIAN)
    return built


@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=["390", "1366"])
def test_no_page_scrolls_sideways(live_server, open_page, world, viewport):
    page = open_page(viewport)
    log_in(page, live_server.url, world.users[Role.ADMIN].username)

    sideways = {}
    for name, path in _world_pages(world).items():
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == 200, (name, response.status)
        page.wait_for_load_state("networkidle")  # htmx fragments loaded on the page's load
        if _sideways(page) > 0:
            sideways[name] = _sideways(page)

    assert sideways == {}, f"pages wider than the {viewport['width']} px screen: {sideways}"


def test_at_1366_the_queue_tables_fit_their_cards(live_server, open_page, world):
    page = open_page(LAPTOP)
    log_in(page, live_server.url, world.users[Role.ADMIN].username)
    page.goto(f"{live_server.url}/projects/{world.project.pk}/queue/")

    tables = page.evaluate(
        """() => [...document.querySelectorAll('main .card table')].map(table => {
             const card = table.closest('.card');
             return {
               card: card.querySelector('h2').textContent.trim(),
               beyond: Math.round(table.getBoundingClientRect().right
                                  - (card.getBoundingClientRect().right - 1)),
               rows: table.rows.length,
             };
           })"""
    )
    cards = {table["card"] for table in tables if table["rows"] > 1}
    assert {"Next cases", "Cases held now (1)", "Settings history"} <= cards, tables
    assert [table for table in tables if table["beyond"] > 0] == []
