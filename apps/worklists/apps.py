from django.apps import AppConfig


class WorklistsConfig(AppConfig):
    name = "apps.worklists"
    verbose_name = "Worklists and reranking"
