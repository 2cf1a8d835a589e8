from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from apps.accounts.models import User


@admin.register(User)
class CasebookUserAdmin(UserAdmin):
    search_fields = ["username", "first_name", "last_name", "email"]
