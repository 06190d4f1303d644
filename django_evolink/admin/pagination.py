"""The changelist paginator that never counts a whole large table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property
from django.utils.translation import gettext


class EstimatedCountPaginator(Paginator):
    """A paginator that never counts a whole large table.

    * On PostgreSQL, the count of an unfiltered queryset is the planner's estimate
      (``pg_class.reltuples``) when that estimate is at least ``count_limit``.
    * Otherwise the count is exact up to ``count_limit`` rows (a bounded
      ``SELECT COUNT(*) FROM (... LIMIT count_limit + 1)``); beyond it the count is
      reported as ``count_limit + 1`` with :attr:`count_is_exact` False, and the page
      links stop there (filters and the date hierarchy narrow the list).

    Pages past an estimated end are shown empty rather than refused.
    """

    #: Number of rows counted exactly before the count is capped.
    count_limit = 10_000

    if TYPE_CHECKING:
        # Django's Paginator has this (private) hook since 2.0; the stubs leave it out.
        def _get_page(self, object_list: Any, number: int, paginator: Paginator) -> Page: ...

    def __init__(self, object_list: Any, per_page: int, orphans: int = 0,
                 allow_empty_first_page: bool = True, *, count_limit: int | None = None,
                 **kwargs: Any) -> None:
        if count_limit is not None:
            self.count_limit = count_limit
        self.count_is_exact = True
        self.count_is_estimate = False
        super().__init__(object_list, per_page, orphans, allow_empty_first_page, **kwargs)

    def _table_estimate(self, queryset: QuerySet) -> int | None:
        connection = connections[queryset.db]
        if connection.vendor != "postgresql" or queryset.query.where:
            return None
        if queryset.query.distinct or queryset.query.combinator:
            return None
        table = queryset.model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(table)],
            )
            row = cursor.fetchone()
        if not row or row[0] is None or row[0] < 0:
            return None  # never analysed
        return int(row[0])

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        estimate = self._table_estimate(queryset)
        if estimate is not None and estimate >= self.count_limit:
            self.count_is_exact = False
            self.count_is_estimate = True
            return estimate
        bounded = queryset.order_by()[: self.count_limit + 1].count()
        if bounded > self.count_limit:
            self.count_is_exact = False
        return bounded

    def validate_number(self, number: Any) -> int:
        if self.count_is_exact:
            return super().validate_number(number)
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(gettext("That page number is not an integer"))
        if number < 1:
            raise EmptyPage(gettext("That page number is less than 1"))
        return number

    def page(self, number: Any) -> Page:
        self.count  # noqa: B018 - decides count_is_exact before validating
        if self.count_is_exact:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)

