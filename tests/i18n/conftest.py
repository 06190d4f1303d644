"""Fixtures of the translation tests: the API's and the admin's (imported by name)."""

from tests.support.admin import (  # noqa: F401 - fixtures
    _fast_password_hasher,
    admin_user,
    evolink,
    su_client,
)

pytest_plugins = ["tests.support.api_fixtures"]
