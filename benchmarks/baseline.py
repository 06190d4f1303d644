"""The baseline of the callback benchmark: the cheapest useful DRF write.

A POST with a JSON body ``{"progress": N}`` does one primary-key UPDATE of an
``ImageTask`` and answers 200. Same server, same middleware and the same JSON parsing as
the callback receiver; what it leaves out (token lookup, recording the delivery, the
row lock and the transition rules) is what the callback benchmark measures.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_evolink.models import ImageTask


class BaselineUpdateView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    def post(self, request: Request, pk: Any) -> Response:
        progress = int(request.data.get("progress", 0))
        updated = ImageTask.objects.filter(pk=pk).update(progress=progress)
        return Response({"updated": updated})
