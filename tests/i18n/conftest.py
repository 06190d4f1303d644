"""Fixtures of the translation tests: the admin's (imported by name); the API test module
loads the API fixtures itself."""

from tests.support.admin import (  # noqa: F401 - fixtures
    _fast_password_hasher,
    admin_user,
    evolink,
    su_client,
)
