"""URLs of the example site: django-evolink's API under /evolink/, the demo page at /."""

from demo.views import media
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

urlpatterns = [
    path("", include("demo.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("evolink/", include("django_evolink.urls")),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the language switcher
    # stored inputs and results; DEBUG only (see demo.views.media)
    re_path(r"^media/(?P<path>.*)$", media, name="media"),
    # browsers ask for /favicon.ico on every page (the admin's too): the demo's icon
    path("favicon.ico", RedirectView.as_view(url=static("demo/favicon.svg"))),
]
