from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "apps.cases"
    label = "cases"

    def ready(self) -> None:
        from apps.cases import signals  # noqa: F401  (a deleted project's feature copy)
