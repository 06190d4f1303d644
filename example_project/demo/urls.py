from django.urls import path
from django.views.i18n import JavaScriptCatalog

from . import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    # the page script's sentences (djangojs.po of this app), in the request's language
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["demo"]), name="jsi18n"),
]
