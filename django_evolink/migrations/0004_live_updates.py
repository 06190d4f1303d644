"""Live updates (``watched_until``) and the admin search index (PostgreSQL only).

The index is a trigram GIN index on ``UPPER(prompt)``, the expression Django's
``icontains`` compares on PostgreSQL, so the admin's prompt search uses it instead of
reading every prompt. It needs the ``pg_trgm`` extension (trusted since PostgreSQL 13:
the database owner may create it). Where the extension cannot be created the index is
left out with a warning (the search still works, by a scan). On SQLite and other
databases this step does nothing.
"""

import logging
from typing import Any

from django.db import migrations, models, transaction

logger = logging.getLogger("django_evolink.migrations")

INDEX = "evolink_task_prompt_trgm"


def create_prompt_index(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("django_evolink", "ImageTask")._meta.db_table)
    try:
        with transaction.atomic(using=connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # no privilege, or the contrib package is not installed
        logger.warning("pg_trgm is not available (%s): the admin's prompt search will scan "
                       "the table. Have the database owner run CREATE EXTENSION pg_trgm; "
                       "CREATE INDEX %s ON %s USING gin (UPPER(prompt) gin_trgm_ops)",
                       exc, INDEX, table)
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON {table} USING gin (UPPER(prompt) gin_trgm_ops)"
    )


def drop_prompt_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):

    dependencies = [
        ('django_evolink', '0003_limits'),
    ]

    operations = [
        migrations.AddField(
            model_name='imagetask',
            name='watched_until',
            field=models.DateTimeField(blank=True, editable=False, help_text='Someone follows this task until then: it is polled every few seconds.', null=True, verbose_name='watched until'),
        ),
        migrations.RunPython(create_prompt_index, drop_prompt_index, elidable=False),
    ]
