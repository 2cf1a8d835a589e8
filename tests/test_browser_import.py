"""A data scientist imports a hospital export through the mapping step in a real browser, and a
clinician labels one of its cases by keyboard."""

from __future__ import annotations

import pytest

from apps.cases.models import Case
from apps.labeling.models import Label
from apps.projects.models import Role
from apps.projects.services import membership_set, project_create
from tests.test_browser import browser, log_in, new_page, press_and_wait, shown_case_id
from tests.test_columns import WARD_CSV

pytestmark = pytest.mark.browser

# The ward export without its outcome column: the cases arrive unlabeled, for the clinician.
UNLABELED = "\n".join(line.rsplit(",", 1)[0] for line in WARD_CSV.splitlines()) + "\n"


@pytest.mark.parametrize("width, height", [(1366, 900), (390, 844)])
def test_a_messy_export_goes_in_through_the_mapping_page_and_is_labeled(
    live_server, browser, transactional_db, data_scientist, clinician, tmp_path, width, height
):
    project = project_create(
        name="Ward", classes=["no_recurrence", "recurrence"], features=[], created_by=data_scientist
    )
    membership_set(project=project, username=clinician.username, role=Role.CLINICIAN)
    path = tmp_path / "ward export.csv"
    path.write_text(UNLABELED, encoding="utf-8")

    page = new_page(browser, width, height)
    log_in(page, live_server.url, data_scientist.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/import/")
    page.set_input_files("input[name=file]", str(path))
    page.click("#preview-button")
    page.wait_for_selector("text=What Casebook read")
    assert page.locator("text=day first or month first?").is_visible()
    page.select_option("select[name=date_format]", "%d/%m/%Y")
    page.click("text=Update the preview")
    page.wait_for_function("() => !document.body.innerText.includes('Answer these before')")
    page.click("#import-button")
    page.wait_for_selector("#import-result .msg.success")
    assert "Imported 4 cases" in page.locator("#import-result").inner_text()
    page.context.close()

    cases = {c.external_id: c for c in Case.objects.filter(project=project)}
    assert set(cases) == {"P-001", "P-002", "P-003", "P-004"}
    assert str(cases["P-003"].occurred_at.date()) == "2021-04-11"

    page = new_page(browser, width, height)
    log_in(page, live_server.url, clinician.username)
    page.goto(f"{live_server.url}/projects/{project.pk}/label/")
    shown = shown_case_id(page)
    assert "ph_ecog" in page.content() and "smoker" in page.content()
    press_and_wait(page, "2")
    page.context.close()
    label = Label.objects.get(case__project=project, case__external_id=shown)
    assert (label.value, label.author_id) == ("recurrence", clinician.pk)
