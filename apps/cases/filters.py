"""Filters of the case list in the API (django-filter)."""

import django_filters

from apps.cases.models import Case


class CaseFilter(django_filters.FilterSet):
    label = django_filters.CharFilter(
        field_name="current_label", help_text="cases whose current label is this class"
    )
    labeled = django_filters.BooleanFilter(
        method="filter_labeled", help_text="true: labeled cases only; false: unlabeled only"
    )
    occurred_from = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_to = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    external_id = django_filters.CharFilter(field_name="external_id")

    class Meta:
        model = Case
        fields = ["label", "labeled", "occurred_from", "occurred_to", "external_id"]

    def filter_labeled(self, queryset, name, value):
        return queryset.exclude(current_label="") if value else queryset.filter(current_label="")
