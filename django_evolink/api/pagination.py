"""Pagination of ``GET tasks/``: page numbers, ``EVOLINK['PAGE_SIZE']`` tasks a page."""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination

from .. import conf


class EvolinkPagination(PageNumberPagination):
    """``?page=N`` and ``?page_size=M`` (at most ``max_page_size``)."""

    page_size_query_param = "page_size"
    max_page_size = 100

    # Read lazily so override_settings works. DRF only reads page_size; the stubs
    # declare it a plain (writable) attribute, hence the ignore.
    @property
    def page_size(self) -> int:  # type: ignore[override]
        return int(conf.get("PAGE_SIZE"))
