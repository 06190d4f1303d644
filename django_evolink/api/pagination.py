"""Pagination of ``GET tasks/``: page numbers, ``EVOLINK['PAGE_SIZE']`` tasks a page."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination

from .. import conf


class EvolinkPagination(PageNumberPagination):
    """``?page=N`` and ``?page_size=M`` (at most ``max_page_size``)."""

    page_size_query_param = "page_size"
    max_page_size = 100

    @property
    def page_size(self) -> int:  # read lazily so override_settings works
        return int(conf.get("PAGE_SIZE"))
