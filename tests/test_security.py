"""Hardening: the Content Security Policy and pages that keep to it, login throttling, strong
passwords, and production settings that refuse to start unsafe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.audit.models import AuditAction, AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def test_pages_carry_a_policy_that_allows_no_inline_script(client, project, clinician):
    client.force_login(clinician)
    response = client.get(reverse("workbench:project", args=[project.pk]))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-eval'" not in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy


def test_no_template_has_inline_script_or_event_handler_attributes():
    """What the policy would block in a browser: inline <script> bodies, on…= handlers and
    htmx's hx-on (which evaluates text)."""
    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"<script(?![^>]*\bsrc=)[^>]*>", text):
            if 'type="application/json"' not in match.group(0):
                offenders.append(f"{path.name}: inline <script>")
        if re.search(r"\son[a-z]+\s*=\s*[\"']", text):
            offenders.append(f"{path.name}: on…= handler")
        if "hx-on" in text:
            offenders.append(f"{path.name}: hx-on")
    assert offenders == []


def test_repeated_wrong_passwords_lock_the_username_out_from_that_address(
    client, clinician, settings
):
    url = reverse("login")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(url, {"username": "clara", "password": "nope"}, REMOTE_ADDR="10.0.0.7")
    locked = client.post(url, {"username": "clara", "password": PASSWORD}, REMOTE_ADDR="10.0.0.7")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session  # even the right password is refused now
    # Another address is not locked out by someone else's guesses.
    other = client.post(url, {"username": "clara", "password": PASSWORD}, REMOTE_ADDR="10.0.0.8")
    assert other.status_code == 302
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED).count() >= 5


def test_passwords_must_be_long_and_not_common(clinician):
    with pytest.raises(ValidationError, match="at least 12 characters"):
        validate_password("Short1!x", user=clinician)
    with pytest.raises(ValidationError, match="too common"):
        validate_password("password1234", user=clinician)
    validate_password("a horse, a battery and a staple", user=clinician)


@pytest.mark.parametrize(
    ("environment", "refusal"),
    [
        ({"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG must be off"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY must be set"),
        ({"DATABASE_URL": "sqlite:///x.sqlite3"}, "DATABASE_URL must point to PostgreSQL"),
    ],
)
def test_production_settings_refuse_to_start_unsafe(environment, refusal):
    safe = {
        "DJANGO_SECRET_KEY": "k" * 50,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/casebook",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "DJANGO_DEBUG": "0",
    }
    env = {
        **os.environ,
        **safe,
        **environment,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and refusal in result.stderr


def test_production_settings_start_when_safe_with_secure_cookies_and_hsts():
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": "k" * 50,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/casebook",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "DJANGO_DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
    }
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS > 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True"]
