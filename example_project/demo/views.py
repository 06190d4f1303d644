"""The frontend page: everything else happens in the browser against the REST API."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.static import serve

from django_evolink import conf
from django_evolink.evolink import catalogue

#: Every sentence the page's script shows, translatable here (%s: a value filled in by JS).
MESSAGES = {
    "sending": _("Sending your request…"),
    "uploading": _("Uploading the images and sending the request…"),
    "network": _("Could not reach this site. Check your connection and try again."),
    "login": _("Your session has ended: log in again."),
    "forbidden": _("You are not allowed to do that."),
    "not_found": _("This task no longer exists."),
    "validation": _("Please correct the fields marked below."),
    "both_sources": _("Use either image files or image URLs, not both."),
    "no_images": _("Choose one or two image files, or paste one or two image URLs."),
    "refused": _("The image service refused the request: %s"),
    "out_of_credits": _("Out of credits: the image service has no credits left for this "
                        "site. Try again later. (%s)"),
    "rate_limited": _("Too many requests: please wait %s seconds before trying again."),
    "evolink_down": _("The image service (Evolink) is down or not configured correctly: %s"),
    "server_error": _("The site failed to answer (HTTP %s). Try again later."),
    "refresh_failed": _("Could not ask Evolink for news just now; still waiting…"),
    "task_failed": _("The task failed: %s"),
    "task_cancelled": _("The task was cancelled by Evolink."),
    "storing": _("Done. Copying the images into the site's storage…"),
    "done": _("Done: %s image(s)."),
    "no_tasks": _("No tasks yet: your tasks will be listed here."),
    "retry_in": _("Wait %s s"),
    "generate": _("Generate"),
    "image_alt": _("Generated image %s"),
    "open": _("open"),
    "status_queued": _("queued: saved, not yet accepted by Evolink"),
    "status_pending": _("pending: waiting for Evolink to start"),
    "status_processing": _("processing: %s%%"),
    "status_completed": _("completed"),
    "status_failed": _("failed"),
    "status_cancelled": _("cancelled"),
    "images_legend": _("Images: choose up to %s files…"),
    "image_rules": _("Allowed: %s."),
    "any_image": _("any image"),
    "model_default": _("(the model's default)"),
    "yes": _("yes"),
    "no": _("no"),
    "about_tokens": _("about %s tokens (checked by Evolink)"),
    "text_to_image": _("This model makes images from the prompt alone: it takes no images."),
    "bad_json": _("Not valid JSON."),
    "models_failed": _("Could not load the list of models; the default model is used."),
}


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
        "messages_js": {key: str(value) for key, value in MESSAGES.items()},
    })


def media(request: HttpRequest, path: str) -> HttpResponse:
    """Serve stored images in development (DEBUG) or when EXAMPLE_SERVE_MEDIA is set.

    A production site serves MEDIA_URL from its web server or a storage's own URLs.
    """
    if not (settings.DEBUG or getattr(settings, "EXAMPLE_SERVE_MEDIA", False)):
        raise Http404("Media files are served by the web server in production.")
    return serve(request, path, document_root=settings.MEDIA_ROOT)
