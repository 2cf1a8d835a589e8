"""Tests: SQLite in memory unless DATABASE_URL names a server; fast password hashing."""

from config.env import env_str
from config.settings.base import *  # noqa: F403
from config.settings.base import VAR_DIR

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
VAR_DIR.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Unit tests enqueue into memory (nothing consumes it); integration tests name a real broker.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "memory://localhost/")
CASEBOOK_MODEL_DIR = VAR_DIR / "test-models"
CASEBOOK_FEATURE_CACHE_DIR = str(VAR_DIR / "test-feature-cache")
# Tests do not run collectstatic; WhiteNoise would warn about the missing folder.
WHITENOISE_AUTOREFRESH = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: the concurrency tests label from many threads, each with its own
    # connection, as the web processes of the embedded default do.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-casebook.sqlite3")}  # noqa: F405
