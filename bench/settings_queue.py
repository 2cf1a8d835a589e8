"""Settings for the queue benchmark's server: the embedded default (`config.settings.local`)
with DEBUG off, as a deployment runs it.

`config.settings.local` sets DEBUG = True outright (DJANGO_DEBUG does not reach it), and with
DEBUG on Django keeps every SQL statement of a request in memory (`connection.queries`).
`config.settings.production` cannot be used here: it refuses SQLite and a file-system broker.
Everything else (database from DATABASE_URL or SQLite in CASEBOOK_VAR_DIR, persistent
PostgreSQL connections, the file-system Celery broker, middleware, REST framework) is unchanged.
"""

from config.settings.local import *  # noqa: F403

DEBUG = False
