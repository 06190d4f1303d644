"""The frontend page: everything else happens in the browser against the REST API."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.static import serve

from django_evolink import conf
from django_evolink.evolink import catalogue


@login_required
@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    """The page: a form, a progress bar, the results and the user's recent tasks."""
    spec = catalogue.get_spec(conf.get("DEFAULT_MODEL"))
    return render(request, "demo/index.html", {
        "spec": spec,
        "n_choices": list(range(spec.n_min, (spec.n_max or spec.n_min) + 1)),
        "uses_emulator": getattr(settings, "EVOLINK_USES_EMULATOR", False),
        "emulator_url": getattr(settings, "EXAMPLE_EMULATOR_URL", ""),
    })


def media(request: HttpRequest, path: str) -> HttpResponse:
    """Serve stored images in development (DEBUG) or when EXAMPLE_SERVE_MEDIA is set.

    A production site serves MEDIA_URL from its web server or a storage's own URLs.
    """
    if not (settings.DEBUG or getattr(settings, "EXAMPLE_SERVE_MEDIA", False)):
        raise Http404("Media files are served by the web server in production.")
    return serve(request, path, document_root=settings.MEDIA_ROOT)
