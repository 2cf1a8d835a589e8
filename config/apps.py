"""The Django admin app, with Casebook's site (config/admin_site.py) as its default site. Kept
apart from the site itself: an app's config is imported before any model may be."""

from django.contrib.admin.apps import AdminConfig


class CasebookAdminConfig(AdminConfig):
    default_site = "config.admin_site.CasebookAdminSite"
