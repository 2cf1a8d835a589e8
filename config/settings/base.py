"""Settings shared by every environment. Everything that differs comes from the environment."""

from datetime import timedelta
from pathlib import Path

import dj_database_url

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("CASEBOOK_VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "casebook-insecure-development-key")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "config.apps.CasebookAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
    "apps.accounts",
    "apps.audit",
    "apps.projects",
    "apps.cases",
    "apps.features",
    "apps.labeling",
    "apps.modeling",
    "apps.review",
    "apps.worklists",
    "apps.workbench",
    "apps.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.audit.context.AuditOriginMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.review.context_processors.mentions",
                "apps.projects.context_processors.admin_entry",
            ],
        },
    }
]

# The embedded default is SQLite in var/; production sets DATABASE_URL to PostgreSQL.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'casebook.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        # Off by default: a SELECT 1 before every request's first query costs a round trip.
        # Without it a connection that broke (a database restart) fails the one request that
        # finds it broken, and Django then drops it; the next request reconnects.
        conn_health_checks=env_bool("DATABASE_CONN_HEALTH_CHECKS", False),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to the same file: wait for the lock instead of
    # failing at once, and let readers go on while one process writes (WAL). Connections are
    # kept (CONN_MAX_AGE): opening one re-reads the schema and closing one checkpoints the
    # WAL, about 12 ms a request.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "workbench:home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    # Clinical data: a passphrase of 12+ characters rather than Django's default of 8.
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = Path(env_str("CASEBOOK_MEDIA_ROOT", str(VAR_DIR / "media")))

# Uploads above this many bytes are refused before they are parsed.
CASEBOOK_MAX_IMPORT_BYTES = env_int("CASEBOOK_MAX_IMPORT_BYTES", 512 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Where model files are written (skops format).
CASEBOOK_MODEL_DIR = Path(env_str("CASEBOOK_MODEL_DIR", str(VAR_DIR / "models")))
# Each project's feature matrix is kept here, on this machine's disk, between the runs that read
# it (apps/cases/feature_cache.py); safe to delete at any time. Empty turns the copy off.
CASEBOOK_FEATURE_CACHE_DIR = env_str("CASEBOOK_FEATURE_CACHE_DIR", str(VAR_DIR / "feature-cache"))
# The scheduler looks for projects whose labels changed this often (seconds).
CASEBOOK_RETRAIN_POLL_SECONDS = env_int("CASEBOOK_RETRAIN_POLL_SECONDS", 10)
# A training run whose worker has not beaten its heart for this long is tried again (once).
CASEBOOK_RUN_STALE_SECONDS = env_int("CASEBOOK_RUN_STALE_SECONDS", 60)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.api.errors.api_exception_handler",
    # DRF's three parsers, the JSON one bounded in depth (a deeply nested body is a 400).
    "DEFAULT_PARSER_CLASSES": [
        "apps.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # `?format=` is the label export's own parameter (csv or parquet); DRF would otherwise take
    # it to pick a renderer and answer 404 for both. Clients choose JSON with Accept.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Casebook API",
    "DESCRIPTION": "Import cases, label them, train and compare model versions.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served from our own static files: the docs must work without reaching a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation documents the error answers it can give (apps/api/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.api.schema.error_responses",
    ],
    # `<id:…>` in the URL conf (apps/projects/ids.py): an integer that fits a 64-bit column.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1},
    },
}

# Celery: JSON only, bounded tasks, results kept in our own tables rather than a backend.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60 * 60)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 60 * 60 + 120)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A deploy applies its scores on the default queue, so that it never waits behind a long fit.
CELERY_TASK_ROUTES = {
    "modeling.apply_deployment": {"queue": "default"},
    "modeling.*": {"queue": "ml"},
    "review.*": {"queue": "ml"},
}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULE = {
    "labeling-queue-reconciler": {"task": "labeling.refresh_due_queues", "schedule": 30.0},
    "modeling-retrain-scheduler": {
        "task": "modeling.schedule_retrains",
        "schedule": float(CASEBOOK_RETRAIN_POLL_SECONDS),
    },
    "review-label-issues-mender": {"task": "review.mend_label_issues", "schedule": 60.0},
    "modeling-production-checks": {
        "task": "modeling.check_models",
        "schedule": float(env_int("CASEBOOK_MONITOR_SECONDS", 600)),
    },
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "config.broker:AtomicFilesystemTransport"
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # A broker that is down must not hang a clinician's label submit: fail fast and let the
    # periodic scheduler pick the retrain up later.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
    CELERY_BROKER_CONNECTION_TIMEOUT = 2
    if CELERY_BROKER_URL.startswith("redis://"):
        # A lost connection must not stop a worker that still has acknowledgements to send.
        CELERY_BROKER_TRANSPORT = "config.broker:ClosedSafeRedisTransport"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("CASEBOOK_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}


# Content Security Policy: scripts only from our own static files (htmx, casebook.js; no
# inline script, no eval), nothing framed, forms post only here. Inline style attributes
# stay allowed: progress bars set their width with one.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Login throttling (django-axes): five failures for a username from one address lock that
# pair out for 15 minutes; a success resets the count. Failures are in the audit log too.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("CASEBOOK_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
