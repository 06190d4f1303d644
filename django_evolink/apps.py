from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DjangoEvolinkConfig(AppConfig):
    name = "django_evolink"
    label = "django_evolink"
    verbose_name = _("Evolink image generation")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            schedule,
        )

        schedule.connect_post_migrate(self)
