"""CSV exports of the admin, safe to open in a spreadsheet (OWASP's CSV-injection rules).

A spreadsheet evaluates a cell that starts with ``=``, ``+``, ``-``, ``@`` (and, in some
locales, their fullwidth forms), a tab, a carriage return or a line feed as a formula,
and also after leading spaces; a separator (``,`` or ``;``), a quote or a pipe inside a
value can start a new cell with such a character. Following OWASP
(https://owasp.org/www-community/attacks/CSV_Injection), every cell is wrapped in double
quotes (embedded quotes doubled, so a value cannot leave its cell), and a text cell that
starts a formula, at its start or after any such break, is prefixed with a single quote
so that it is read as text. Numbers are written as they are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse

#: Characters that start a formula (ASCII and fullwidth).
FORMULA_CHARACTERS = "=+-@\uff1d\uff0b\uff0d\uff20"
#: A formula character at the start of the cell (after whitespace), or after a separator,
#: a quote or a pipe (what could open a new cell or a DDE call inside the value).
_FORMULA = re.compile(
    r"(?:^|[,;\"'|])\s*[" + re.escape(FORMULA_CHARACTERS) + r"]|^[\t\r\n]"
)


def csv_cell(value: Any) -> Any:
    """``value`` neutralised for a spreadsheet: text that could start a formula gets a
    leading ``'``; numbers and empty cells are left alone."""
    if isinstance(value, str) and _FORMULA.search(value):
        return "'" + value
    return value


def csv_response(filename: str, header: list[str], rows: Iterable[list[Any]]) -> HttpResponse:
    """An attachment ``filename`` with ``header`` and ``rows``, every cell quoted and
    neutralised by :func:`csv_cell`."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response, quoting=csv.QUOTE_ALL)
    writer.writerow([csv_cell(v) for v in header])
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return response
