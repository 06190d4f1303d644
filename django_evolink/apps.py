from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DjangoEvolinkConfig(AppConfig):
    name = "django_evolink"
    label = "django_evolink"
    verbose_name = _("Evolink image generation")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: they import the models, which must wait for
        # the app registry to be ready.
        from . import checks  # noqa: F401  (registers the system checks)
        from .background import receivers, schedule

        receivers.connect()
        schedule.connect_post_migrate(self)
