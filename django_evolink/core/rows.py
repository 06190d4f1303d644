"""Reading one task row on the hot paths, with SQL Django compiles once.

A callback finds its task by the token's hash, and every apply locks its task by primary
key; both are one plain ``SELECT`` (``... FOR UPDATE`` when locking) whose SQL never
changes. Compiling it through the ORM on every call cost more CPU than running it, so
:func:`task_by` compiles it once per (database, field, locking), runs it on a cursor and
makes the instance as the ORM does: the backend's converters, then ``Model.from_db``.
Whatever does not compile to that plain statement is read the ORM's own way.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, router
from django.db.models import Field

from .models import ImageTask

#: Per (database alias, field, locked): the SQL, the field names in the order selected,
#: and the converters by position.
_COMPILED: dict[tuple[str, str, bool], tuple[str, list[str], dict[int, Any]]] = {}


def task_by(field: str, value: Any, *, for_update: bool = False) -> ImageTask | None:
    """The task whose ``field`` equals ``value`` (the first, for a field that is not
    unique), or None. ``for_update`` locks its row: call it inside a transaction."""
    alias = router.db_for_write(ImageTask) if for_update else router.db_for_read(ImageTask)
    connection = connections[alias]
    model_field = ImageTask._meta.pk if field == "pk" else ImageTask._meta.get_field(field)
    if not isinstance(model_field, Field):
        raise TypeError(f"{field!r} is not a column of ImageTask")
    param = model_field.get_db_prep_value(model_field.get_prep_value(value), connection,
                                          prepared=True)
    key = (alias, field, for_update)
    compiled = _COMPILED.get(key)
    if compiled is None:
        tasks = ImageTask.objects.using(alias).filter(**{field: value})
        if for_update:
            tasks = tasks.select_for_update()
        compiler = tasks[:1].query.get_compiler(alias)
        sql, params = compiler.as_sql()
        columns = [column for column, _sql, _alias in compiler.select]
        names = [column.target.attname for column in columns]
        if list(params) != [param] or names != [
                f.attname for f in ImageTask._meta.concrete_fields]:
            return tasks.first()  # not the plain statement expected: the ORM's own way
        compiled = (sql, names, compiler.get_converters(columns))
        _COMPILED[key] = compiled
    sql, names, converters = compiled
    with connection.cursor() as cursor:
        cursor.execute(sql, [param])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for position, (functions, expression) in converters.items():
        for convert in functions:
            values[position] = convert(values[position], expression, connection)
    return ImageTask.from_db(alias, names, values)


def locked_task(pk: Any) -> ImageTask:
    """The task ``pk`` with its row locked (inside the caller's transaction); raises
    ``ImageTask.DoesNotExist`` as ``QuerySet.get`` does."""
    task = task_by("pk", pk, for_update=True)
    if task is None:
        raise ImageTask.DoesNotExist(f"ImageTask matching pk={pk!r} does not exist.")
    return task
