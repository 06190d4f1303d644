"""Request parsers of the REST API: every body they cannot take is a 400 saying why.

DRF's own parsers answer 400 for most bad bodies, but not for all of them:

- JSON nested too deeply makes Python's parser raise :class:`RecursionError` (a 500);
- DRF 3.15 reads a JSON body from the raw stream, so Django's
  ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (checked only by ``request.body``) does not bound it;
  later versions read ``request.body``, whose ``RequestDataTooBig`` is raised outside
  any parser (the views turn it into a 400 as well);
- Django's multipart parser refuses too many fields or too large ones with
  :class:`~django.core.exceptions.SuspiciousOperation` subclasses, which DRF lets
  through (Django then answers an HTML 400);
- uploaded files are received in full before any size check, so a 100 MB part is read
  (to a temporary file) only to be refused afterwards.

:class:`EvolinkJSONParser` and :class:`EvolinkMultiPartParser` turn each of these into a
DRF :class:`~rest_framework.exceptions.ParseError` (or a field-keyed
:class:`~rest_framework.exceptions.ValidationError` for a file that is too large), and
the multipart parser stops reading the body as soon as one file passes the largest image
size any model of the catalogue takes.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import DataAndFiles, JSONParser, MultiPartParser
from rest_framework.utils import json as drf_json

from ..evolink import catalogue

#: Bytes above the files themselves a multipart create may carry (fields, boundaries).
MULTIPART_OVERHEAD = 1024 * 1024


def too_large_message(limit: int) -> str:
    """The 400 message of a body above ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""
    return _(
        "The request body is larger than %(max)d bytes (the site's "
        "DATA_UPLOAD_MAX_MEMORY_SIZE)."
    ) % {"max": limit}


class EvolinkJSONParser(JSONParser):
    """DRF's JSON parser, bounded by ``DATA_UPLOAD_MAX_MEMORY_SIZE`` and safe against
    deep nesting: every body it cannot take answers 400."""

    def _parse_constant(self) -> Any:
        """Refuse ``NaN`` and ``Infinity`` as DRF does with ``STRICT_JSON`` (default)."""
        return drf_json.strict_constant if self.strict else None

    def parse(self, stream: IO[bytes] | None, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = b"" if stream is None else stream.read(-1 if limit is None else limit + 1)
        if limit is not None and len(raw) > limit:
            raise ParseError(too_large_message(limit))
        try:
            text = codecs.decode(raw, encoding)
            return json.loads(text, parse_constant=self._parse_constant())
        except RecursionError:
            raise ParseError(
                _("JSON parse error: the body is nested too deeply to be read; a task "
                  "request is an object of strings, numbers and lists of strings.")
            )
        except (ValueError, LookupError) as exc:
            # UnicodeDecodeError is a ValueError; LookupError: an unknown charset
            raise ParseError(_("JSON parse error: %(error)s") % {"error": exc})


class UploadSizeLimitHandler(FileUploadHandler):
    """Stops reading a multipart body as soon as the request, or one file in it, is
    larger than the largest image times the most images any allowed model takes
    (:func:`~django_evolink.evolink.catalogue.upload_bounds`); each file is then checked
    against its own model's limits by the serializer."""

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.max_files, self.max_file_bytes = catalogue.upload_bounds()
        self.error: str | None = None
        self._file_bytes = 0
        self._files = 0

    def handle_raw_input(self, input_data: Any, META: Any, content_length: int,
                         boundary: Any, encoding: str | None = None) -> None:
        limit = self.max_files * self.max_file_bytes + MULTIPART_OVERHEAD
        if content_length and content_length > limit:
            self.error = _(
                "The upload is %(got)d bytes; at most %(files)d images of %(max)d MB each "
                "are allowed (%(limit)d bytes with the form fields)."
            ) % {"got": content_length, "files": self.max_files,
                 "max": self.max_file_bytes // (1024 * 1024), "limit": limit}
            raise StopUpload(connection_reset=True)

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        self._file_bytes = 0
        self._files += 1

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self._file_bytes += len(raw_data)
        if self._file_bytes > self.max_file_bytes:
            self.error = _(
                "Image %(i)d (%(name)s): the file is larger than %(max)d MB, the most "
                "allowed; the upload was stopped there."
            ) % {"i": self._files, "name": self.file_name,
                 "max": self.max_file_bytes // (1024 * 1024)}
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


class EvolinkMultiPartParser(MultiPartParser):
    """DRF's multipart parser with :class:`UploadSizeLimitHandler` in front of the site's
    upload handlers, and Django's refusals (too many fields, a field too large) as 400."""

    def parse(self, stream: IO[bytes] | None, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> DataAndFiles:
        parser_context = parser_context or {}
        request = parser_context["request"]
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        limiter = UploadSizeLimitHandler(request)
        try:
            parser = DjangoMultiPartParser(meta, stream,  # type: ignore[arg-type]
                                           [limiter, *request.upload_handlers], encoding)
            data, files = parser.parse()
        except StopUpload:
            pass  # refused by the limiter before anything was read; its error says why
        except RequestDataTooBig:
            raise ParseError(too_large_message(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0))
        except (MultiPartParserError, SuspiciousOperation) as exc:
            raise ParseError(_("Multipart form parse error: %(error)s") % {"error": exc})
        if limiter.error:
            # reading stopped there: what was received is dropped, nothing is stored
            raise ValidationError({"images": [limiter.error]})
        return DataAndFiles(data, files)
