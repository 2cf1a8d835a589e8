"""The permission matrix: every page and API route of the URL conf, for every method it
answers, asked by an anonymous visitor, a member of another project only, and a member of the
project in each role.

The routes come from the URL conf, so a route added without an entry in ACCESS fails here
(by name) until someone says who may use it. Expectations:

- anonymous: pages redirect to the login page, the API answers 401 or 403;
- a member of another project only: 404, never 403, and never the project's name in the body;
- a member whose role is too low: 403;
- a member whose role is enough: anything but 401, 403, 404, 405 or a 5xx (an empty POST may
  well be refused as 400, or 409).

The project and its objects are made once for the module (tests/world.py); each test runs in a
savepoint, so a request that writes changes nothing for the next one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from apps.projects.models import ROLE_RANK, Role
from tests.world import OTHER_NAME, PROJECT_NAME, World, module_world

# Who may use a route, per method: a role of the project (at least), or any signed-in user for
# routes that belong to no project (their answers are about the caller's own projects).
AUTHENTICATED = "authenticated"
# Creating a project: someone who is a data scientist or admin of some project (the outsider
# is the admin of their own), not clinicians and reviewers.
PROJECT_CREATOR = "project creator"
CLINICIAN, REVIEWER, DATA_SCIENTIST, ADMIN = (
    Role.CLINICIAN,
    Role.REVIEWER,
    Role.DATA_SCIENTIST,
    Role.ADMIN,
)

ACCESS: dict[str, dict[str, str]] = {
    # Pages
    "workbench:home": {"GET": AUTHENTICATED},
    "workbench:project": {"GET": CLINICIAN},
    "projects:create": {"GET": PROJECT_CREATOR, "POST": PROJECT_CREATOR},
    "workbench:member_remove": {"POST": ADMIN},
    "projects:settings": {"GET": DATA_SCIENTIST, "POST": DATA_SCIENTIST},
    "projects:members": {"GET": ADMIN, "POST": ADMIN},
    "labeling:label": {"GET": CLINICIAN},
    "labeling:undo": {"POST": CLINICIAN},
    "labeling:submit": {"POST": CLINICIAN},
    "labeling:skip": {"POST": CLINICIAN},
    "labeling:import": {"GET": DATA_SCIENTIST, "POST": DATA_SCIENTIST},
    "labeling:import_preview": {"POST": DATA_SCIENTIST},
    "labeling:queue": {"GET": REVIEWER, "POST": REVIEWER},
    "labeling:agreement": {"GET": REVIEWER},
    "labeling:relabel_request": {"POST": REVIEWER},
    "labeling:export": {"GET": DATA_SCIENTIST},
    "modeling:runs": {"GET": CLINICIAN},
    "modeling:retrain": {"POST": DATA_SCIENTIST},
    "modeling:models": {"GET": REVIEWER, "POST": DATA_SCIENTIST},
    "modeling:compare": {"GET": REVIEWER},
    "modeling:deploy": {"POST": DATA_SCIENTIST},
    "modeling:run": {"GET": REVIEWER},
    "modeling:reproduce": {"POST": DATA_SCIENTIST},
    "modeling:cancel": {"POST": DATA_SCIENTIST},
    "review:board": {"GET": REVIEWER},
    "review:relabel": {"POST": REVIEWER},
    "review:save_view": {"POST": REVIEWER},
    "review:comments": {"GET": CLINICIAN, "POST": CLINICIAN},
    "review:mentions": {"GET": AUTHENTICATED, "POST": AUTHENTICATED},
    "worklists:list": {"GET": REVIEWER, "POST": REVIEWER},
    "worklists:agreement": {"GET": REVIEWER},
    "worklists:pairs": {"GET": DATA_SCIENTIST},
    "worklists:derive": {"POST": DATA_SCIENTIST},
    "worklists:rerank": {"GET": REVIEWER},
    "worklists:order": {"POST": REVIEWER},
    "worklists:judge": {"POST": REVIEWER},
    "worklists:done": {"POST": REVIEWER},
    "worklists:case_features": {"GET": REVIEWER},
    # Derived features: every member reads the definitions, reviewers define them.
    "features:page": {"GET": CLINICIAN, "POST": REVIEWER},
    "features:preview": {"POST": REVIEWER},
    "features:change": {"GET": REVIEWER, "POST": REVIEWER},
    "features:retire": {"POST": REVIEWER},
    # API
    "api:projects": {"GET": AUTHENTICATED, "POST": PROJECT_CREATOR},
    "api:project": {"GET": CLINICIAN},
    "api:members": {"GET": ADMIN, "POST": ADMIN, "DELETE": ADMIN},
    "api:cases": {"GET": REVIEWER},
    "api:import": {"POST": DATA_SCIENTIST},
    "api:import-preview": {"POST": DATA_SCIENTIST},
    "api:export": {"GET": DATA_SCIENTIST},
    "api:queue-next": {"GET": CLINICIAN},
    "api:queue-release": {"POST": CLINICIAN},
    "api:queue-settings": {"GET": REVIEWER, "PUT": REVIEWER},
    "api:agreement": {"GET": REVIEWER},
    "api:tasks": {"GET": REVIEWER, "POST": REVIEWER},
    # Runs and the version list are on the project page for every member (the runs panel).
    "api:training-runs": {"GET": CLINICIAN, "POST": DATA_SCIENTIST},
    "api:training-run": {"GET": CLINICIAN},
    "api:training-run-reproduce": {"POST": DATA_SCIENTIST},
    "api:training-run-cancel": {"POST": DATA_SCIENTIST},
    "api:model-versions": {"GET": CLINICIAN},
    "api:model-version": {"GET": REVIEWER},
    "api:model-version-deploy": {"POST": DATA_SCIENTIST},
    "api:rollback": {"POST": DATA_SCIENTIST},
    "api:deployments": {"GET": REVIEWER},
    "api:predict": {"POST": REVIEWER},
    "api:objective": {"GET": REVIEWER, "PUT": DATA_SCIENTIST},
    "api:training-config": {"GET": REVIEWER, "PUT": DATA_SCIENTIST},
    "api:alerts": {"GET": REVIEWER},
    "api:label-issues": {"GET": REVIEWER},
    "api:worklists": {"GET": REVIEWER, "POST": REVIEWER},
    "api:worklist-agreement": {"GET": REVIEWER},
    "api:worklist-pairs": {"GET": DATA_SCIENTIST},
    "api:worklist": {"GET": REVIEWER},
    "api:worklist-session": {"GET": REVIEWER, "PUT": REVIEWER},
    "api:worklist-judgments": {"POST": REVIEWER},
    "api:derived-projects": {"POST": DATA_SCIENTIST},
    "api:derived-features": {"GET": CLINICIAN, "POST": REVIEWER},
    "api:derived-feature-preview": {"POST": REVIEWER},
    "api:derived-feature": {"GET": CLINICIAN, "PATCH": REVIEWER},
    "api:derived-feature-retire": {"POST": REVIEWER},
    "api:feature-sets": {"GET": CLINICIAN},
    "api:case-labels": {"GET": CLINICIAN, "POST": CLINICIAN},
    "api:case-skip": {"POST": CLINICIAN},
    "api:case-comments": {"GET": CLINICIAN, "POST": CLINICIAN},
    "api:mentions": {"GET": AUTHENTICATED},
}

# Routes outside the matrix, each with the reason. A namespace ends in ":".
PUBLIC_OR_SPECIAL: dict[str, str] = {
    "admin:": "the Django admin: data scientists and admins of a project (test_admin.py)",
    "api:schema": "the OpenAPI schema: public by design, holds no data (test_api_schema.py)",
    "api:docs": "the browsable API docs: a static page that loads the schema",
    "login": "the login page: public, throttled by django-axes (test_security.py)",
    "logout": "logging out: POST only, harmless for anyone",
    "password_change": "Django's own view, login required, about the caller only",
    "password_change_done": "Django's own view, login required, about the caller only",
    "password_reset": "Django's own public view: sends mail, reveals nothing about projects",
    "password_reset_done": "Django's own public view",
    "password_reset_confirm": "Django's own public view, guarded by a signed token",
    "password_reset_complete": "Django's own public view",
}

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PERSONAS = ("anonymous", "outsider", *ROLE_RANK)


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str
    params: tuple[str, ...]


def _walk(patterns, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            pattern = prefix + str(entry.pattern)
            params = tuple(re.findall(r"<(?:\w+:)?(\w+)>", pattern))
            # An unnamed route cannot be in the table: it fails by its pattern until named.
            name = entry.name or f"<unnamed: {pattern}>"
            yield Route(name=f"{namespace}{name}", pattern=pattern, params=params)


def _special(name: str) -> bool:
    return name in PUBLIC_OR_SPECIAL or any(
        key.endswith(":") and name.startswith(key) for key in PUBLIC_OR_SPECIAL
    )


def url_conf_routes() -> list[Route]:
    return [r for r in _walk(get_resolver().url_patterns) if not _special(r.name)]


ALL_ROUTES = url_conf_routes()
# A name given to two patterns would leave the second unchecked: the completeness test says so.
ROUTES = list({route.name: route for route in reversed(ALL_ROUTES)}.values())[::-1]


def _cases() -> list[tuple[Route, str, str]]:
    cases = []
    for route in ROUTES:
        methods = ACCESS.get(route.name) or {"GET": "missing"}
        for method in methods:
            for persona in PERSONAS:
                cases.append((route, method, persona))
    return cases


def _unlisted_methods() -> list[tuple[Route, str]]:
    return [
        (route, method)
        for route in ROUTES
        if route.name in ACCESS
        for method in METHODS
        if method not in ACCESS[route.name]
    ]


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    with module_world(django_db_blocker, tmp_path_factory.mktemp("matrix")) as built:
        yield built


# --- helpers -------------------------------------------------------------------------------


def _url(route: Route, params: dict[str, object]) -> str:
    return reverse(route.name, kwargs={p: params[p] for p in route.params})


def _request(client: Client, method: str, url: str):
    if method == "GET":
        return client.get(url)
    if method == "POST":
        return client.post(url, {})  # an empty form (multipart), for pages and API alike
    return client.generic(method, url, "{}", content_type="application/json")


def _body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def _is_api(route: Route) -> bool:
    return route.name.startswith("api:")


def _allows(required: str, persona: str) -> bool:
    if persona == "anonymous":
        return False
    if required == AUTHENTICATED:
        return True
    if required == PROJECT_CREATOR:
        return persona in ("outsider", Role.DATA_SCIENTIST, Role.ADMIN)
    if persona == "outsider":
        return False
    return ROLE_RANK[persona] >= ROLE_RANK[required]


ALLOWED_ANSWERS = {200, 201, 202, 204, 301, 302, 303, 400, 409}


# --- the tests -----------------------------------------------------------------------------


def test_every_route_of_the_url_conf_is_in_the_table():
    names = {route.name for route in ROUTES}
    missing = sorted(names - set(ACCESS))
    stale = sorted(set(ACCESS) - names)
    twice = sorted(
        {r.pattern for r in ALL_ROUTES if [x.name for x in ALL_ROUTES].count(r.name) > 1}
    )
    assert not missing, f"routes with no entry in ACCESS (who may use them?): {missing}"
    assert not stale, f"ACCESS names routes the URL conf no longer has: {stale}"
    assert not twice, f"patterns sharing a name, so only the first is checked: {twice}"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("route", "method", "persona"),
    _cases(),
    ids=[f"{r.name}-{m}-{p}" for r, m, p in _cases()],
)
def test_permission_matrix(world: World, route: Route, method: str, persona: str):
    assert route.name in ACCESS, (
        f"{route.name} ({route.pattern}) is not in the permission table ACCESS of "
        f"tests/test_permissions.py: add who may use it, per method"
    )
    required = ACCESS[route.name][method]
    response = _request(world.clients[persona], method, _url(route, world.params))
    status = response.status_code
    body = _body(response)
    where = f"{method} {route.pattern} as {persona}: {status} {body[:300]!r}"

    if persona == "anonymous":
        if _is_api(route):
            assert status in (401, 403), where
        else:
            assert status == 302, where
            assert response["Location"].startswith(resolve_url(settings.LOGIN_URL)), where
        return
    if persona == "outsider":
        # Nothing of the project may show: not its name, whether the answer is 404 or a page
        # of the outsider's own.
        assert PROJECT_NAME not in body, where
        if required not in (AUTHENTICATED, PROJECT_CREATOR):
            assert status == 404, where
            return
    if _allows(required, persona):
        assert status in ALLOWED_ANSWERS, where
    else:
        assert status == 403, where


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("route", "method"),
    _unlisted_methods(),
    ids=[f"{r.name}-{m}" for r, m in _unlisted_methods()],
)
def test_methods_not_in_the_table_are_refused(world: World, route: Route, method: str):
    """An admin of the project gets 405 for every method the table does not list, so that a
    method added to a view cannot slip past the matrix."""
    response = _request(world.clients[Role.ADMIN], method, _url(route, world.params))
    assert response.status_code == 405, f"{method} {route.pattern}: {response.status_code}"


OBJECT_PARAMS = ("case_id", "run_id")


def _object_routes() -> list[tuple[Route, str]]:
    return [
        (route, method)
        for route in ROUTES
        if route.name in ACCESS and set(route.params) & set(OBJECT_PARAMS)
        for method in ACCESS[route.name]
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("route", "method"),
    _object_routes(),
    ids=[f"{r.name}-{m}" for r, m in _object_routes()],
)
def test_another_projects_object_is_not_found_even_for_an_admin(
    world: World, route: Route, method: str
):
    """The project's admin, asking for a case or a training run of a project they are not a
    member of (under their own project's id in the path, where there is one): 404, and
    nothing of that project in the answer."""
    response = _request(world.clients[Role.ADMIN], method, _url(route, world.other_params))
    body = _body(response)
    assert response.status_code == 404, f"{method} {route.pattern}: {response.status_code}"
    assert OTHER_NAME not in body


def _ids_elsewhere(world: World) -> list[tuple[str, str, str, dict, set[int]]]:
    other_case = world.other_params["case_id"]
    return [
        ("GET", "labeling:label", f"?case={other_case}", {}, {404}),
        ("POST", "api:tasks", "", {"case": other_case, "reason": "x"}, {404}),
        ("POST", "api:predict", "", {"case_ids": [other_case]}, {400}),
        (
            "POST",
            "api:worklist-judgments",
            "",
            {"case_id": other_case, "value": "actionable"},
            {400},
        ),
        ("PUT", "api:worklist-session", "", {"order": [other_case]}, {400}),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("index", range(5), ids=["label", "task", "predict", "judge", "order"])
def test_another_projects_case_named_in_the_query_or_body_is_refused(world: World, index: int):
    """Ids that travel in the query or the body are checked against the project in the path:
    another project's case is not found (or refused as not the project's), for an admin too."""
    method, name, query, body, expected = _ids_elsewhere(world)[index]
    route = next(r for r in ROUTES if r.name == name)
    client = world.clients[Role.ADMIN]
    url = _url(route, world.params) + query
    if method == "GET":
        response = client.get(url)
    else:
        response = client.generic(method, url, json.dumps(body), content_type="application/json")
    assert response.status_code in expected, f"{name}: {response.status_code} {_body(response)}"
    assert OTHER_NAME not in _body(response)
