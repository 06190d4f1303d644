"""The admin tests' fixtures (defined in tests/support/admin.py)."""

from tests.support.admin import (  # noqa: F401 - fixtures
    _fast_password_hasher,
    admin_user,
    evolink,
    su_client,
)
