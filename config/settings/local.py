"""The embedded default: SQLite and a file-system broker, nothing to install."""

from config.settings.base import *  # noqa: F403
from config.settings.base import VAR_DIR

DEBUG = True

VAR_DIR.mkdir(parents=True, exist_ok=True)
for _folder in ("queue", "processed", "control"):
    (VAR_DIR / "broker" / _folder).mkdir(parents=True, exist_ok=True)
