"""URLs of the benchmark server: the admin, django-evolink, and the baseline view."""

from django.contrib import admin
from django.urls import include, path

from .baseline import BaselineUpdateView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("evolink/", include("django_evolink.urls")),
    path("bench/baseline/<uuid:pk>/", BaselineUpdateView.as_view(), name="bench-baseline"),
]
