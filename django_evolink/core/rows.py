"""Reading and writing one task row on the hot paths, with SQL Django compiles once.

A callback finds its task by the token's hash, and every apply locks its task by primary
key; both are one plain ``SELECT`` (``... FOR UPDATE`` when locking) whose SQL never
changes. Compiling it through the ORM on every call cost more CPU than running it, so
:func:`task_by` compiles it once per (database, field, locking), runs it on a cursor and
makes the instance as the ORM does: the backend's converters, then ``Model.from_db``.
Whatever does not compile to that plain statement is read the ORM's own way.

An answer applied to a row read without a lock is written by :func:`write_guarded`: a
compare-and-set of the columns the merge read, with the event (and result images) it
records - on PostgreSQL one statement, so one round trip and one commit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Field, Model

from .models import FINAL_STATUSES, GeneratedImage, ImageTask, TaskEvent

#: Per (database alias, field, locked): the SQL, the field names in the order selected,
#: and the converters by position.
_COMPILED: dict[tuple[str, str, bool], tuple[str, list[str], dict[int, Any]]] = {}
#: Per (database alias, field): the statement of :func:`find_and_record` on PostgreSQL.
_RECORDING_SQL: dict[tuple[str, str], str] = {}


def task_by(field: str, value: Any, *, for_update: bool = False) -> ImageTask | None:
    """The task whose ``field`` equals ``value`` (the first, for a field that is not
    unique), or None. ``for_update`` locks its row: call it inside a transaction."""
    alias = router.db_for_write(ImageTask) if for_update else router.db_for_read(ImageTask)
    connection = connections[alias]
    param = _lookup_param(field, value, connection)
    compiled = _compiled_select(alias, field, for_update, param, value)
    if compiled is None:
        tasks = ImageTask.objects.using(alias).filter(**{field: value})
        return (tasks.select_for_update() if for_update else tasks).first()
    sql, names, converters = compiled
    with connection.cursor() as cursor:
        cursor.execute(sql, [param])
        row = cursor.fetchone()
    return None if row is None else _task_from_row(alias, names, converters, row)


def find_and_record(field: str, value: Any, event: TaskEvent) -> ImageTask | None:
    """:func:`task_by` (no lock) that also inserts ``event`` (a delivery not saved yet,
    its task unknown) for the task found, unless that task is final: ``event.pk`` then
    says whether it was stored. Nothing is stored when no task is found.

    On PostgreSQL one statement (the ``INSERT`` selects from the lookup), so a delivery is
    found and recorded in one round trip and one commit; elsewhere the lookup, then the
    ``INSERT``.
    """
    alias = router.db_for_write(ImageTask)
    connection: Any = connections[alias]
    param = _lookup_param(field, value, connection)
    compiled = _compiled_select(alias, field, False, param, value)
    if connection.vendor != "postgresql" or compiled is None:
        task = task_by(field, value)
        if task is not None and not task.is_final:
            event.task_id = task.pk
            event.save(force_insert=True, using=alias)
        return task
    select, names, converters = compiled
    fields = _inserted_fields(TaskEvent)
    finals = sorted(FINAL_STATUSES)
    sql = _RECORDING_SQL.get((alias, field))
    if sql is None:
        qn = connection.ops.quote_name
        status = _fields_by_name(ImageTask)["status"].column
        # Only the models' own table and column names (quoted) and types are built in;
        # every value is a parameter.
        sql = (
            f"WITH found AS ({select}), "  # noqa: S608
            f"recorded AS ({_insert_into(connection, TaskEvent, fields)} "
            f"SELECT found.{qn(ImageTask._meta.pk.column)}, "
            f"{', '.join(_cast(connection, f) for f in fields)} FROM found "
            f"WHERE found.{qn(status)} NOT IN ({', '.join(['%s'] * len(finals))}) "
            f"RETURNING {qn(TaskEvent._meta.pk.column)} AS id) "
            "SELECT found.*, (SELECT recorded.id FROM recorded) FROM found"
        )
        _RECORDING_SQL[(alias, field)] = sql
    params = [param, *_insert_params(event, fields, connection), *finals]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    task = _task_from_row(alias, names, converters, row[:-1])
    if row[-1] is not None:
        event.task_id = task.pk
        _stored(event, row[-1], alias)
    return task


def _stored(event: TaskEvent, pk: Any, alias: str) -> None:
    """Mark ``event`` as the row a statement of this module inserted with key ``pk``."""
    event.pk = pk
    event._state.adding, event._state.db = False, alias


def _cast(connection: Any, field: Field) -> str:
    """A parameter cast to ``field``'s column type (an ``INSERT ... SELECT`` has no
    column to infer it from)."""
    return f"CAST(%s AS {field.db_type(connection)})"


def _insert_into(connection: Any, model: type[Model], fields: list[Field]) -> str:
    """``INSERT INTO <model's table> (<its task column>, <fields' columns>)``."""
    qn = connection.ops.quote_name
    task_column = next(f.column for f in model._meta.concrete_fields if f.name == "task")
    return (f"INSERT INTO {qn(model._meta.db_table)} ({qn(task_column)}, "
            f"{', '.join(qn(f.column) for f in fields)})")


def _lookup_param(field: str, value: Any, connection: Any) -> Any:
    model_field = ImageTask._meta.pk if field == "pk" else ImageTask._meta.get_field(field)
    if not isinstance(model_field, Field):
        raise TypeError(f"{field!r} is not a column of ImageTask")
    return model_field.get_db_prep_value(model_field.get_prep_value(value), connection,
                                         prepared=True)


def _compiled_select(alias: str, field: str, for_update: bool, param: Any, value: Any
                     ) -> tuple[str, list[str], dict[int, Any]] | None:
    """The plain ``SELECT`` of the task whose ``field`` is ``value``, compiled once per
    (database, field, locking): SQL, field names in the order selected, converters by
    position. None when the ORM does not compile it to that plain statement."""
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
            return None
        compiled = (sql, names, compiler.get_converters(columns))
        _COMPILED[key] = compiled
    return compiled


def _task_from_row(alias: str, names: list[str], converters: dict[int, Any],
                   row: Sequence[Any]) -> ImageTask:
    """The instance of a row read by a compiled select, made as the ORM makes it."""
    connection = connections[alias]
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


#: The statements of :func:`_write_guarded_postgres`, by (database, written fields,
#: guarded fields, number of images, fields of the stored event finished).
_GUARDED_SQL: dict[tuple[str, tuple[str, ...], tuple[str, ...], int, tuple[str, ...]], str] = {}

#: A stored event and the values to write to it.
EventValues = tuple[TaskEvent, dict[str, Any]]


def write_guarded(task: ImageTask, values: dict[str, Any], guard: dict[str, Any],
                  event: TaskEvent, images: Sequence[GeneratedImage] = (), *,
                  finish: EventValues | None = None, read_watch: bool = True) -> bool:
    """Write ``values`` to the row of ``task`` only while its columns still hold
    ``guard`` (compare-and-set, ``None`` meaning NULL), and insert ``event`` and ``images``
    with it (``finish``: and update that stored event, e.g. the callback delivery a
    re-fetch verified): all or nothing. Returns False, with nothing written, when the row
    changed meanwhile (or is gone).

    When it is written, ``event`` is saved and ``task.watched_until`` is the row's as the
    write found it (a watch mark written meanwhile waits for the row's lock, so it is
    seen): on PostgreSQL one statement (``UPDATE ... RETURNING`` feeding the inserts, a
    savepoint inside a caller's transaction); elsewhere one transaction of the ORM's
    statements (``read_watch=False`` spares the read of the mark there).
    """
    alias = router.db_for_write(ImageTask)
    connection = connections[alias]
    if connection.vendor == "postgresql":
        written = _write_guarded_postgres(connection, task, values, guard, event, images,
                                          finish)
    else:
        written = _write_guarded_orm(alias, task, values, guard, event, images, finish,
                                     read_watch)
    if written and finish is not None:
        for name, value in finish[1].items():
            setattr(finish[0], name, value)
    return written


def _write_guarded_orm(alias: str, task: ImageTask, values: dict[str, Any],
                       guard: dict[str, Any], event: TaskEvent,
                       images: Sequence[GeneratedImage], finish: EventValues | None,
                       read_watch: bool) -> bool:
    """:func:`write_guarded` as one transaction of the ORM's statements."""
    try:
        with transaction.atomic(using=alias):
            matching = ImageTask.objects.using(alias).filter(pk=task.pk, **guard)
            if matching.update(**values) != 1:
                return False
            event.save(force_insert=True, using=alias)
            if images:
                GeneratedImage.objects.using(alias).bulk_create(images, ignore_conflicts=True)
            if finish is not None:
                TaskEvent.objects.using(alias).filter(pk=finish[0].pk).update(**finish[1])
            if read_watch:
                task.watched_until = ImageTask.objects.using(alias).filter(
                    pk=task.pk).values_list("watched_until", flat=True).get()
    except Exception:
        event.pk, event._state.adding = None, True  # its insert was rolled back
        raise
    return True


def _write_guarded_postgres(connection: Any, task: ImageTask, values: dict[str, Any],
                            guard: dict[str, Any], event: TaskEvent,
                            images: Sequence[GeneratedImage], finish: EventValues | None) -> bool:
    """:func:`write_guarded` as one statement: the inserts select from the UPDATE's
    ``RETURNING``, so they happen only when it matched."""
    task_fields, event_by_name = _fields_by_name(ImageTask), _fields_by_name(TaskEvent)
    event_fields = _inserted_fields(TaskEvent)
    image_fields = _inserted_fields(GeneratedImage)
    finished = finish[1] if finish is not None else {}
    key = (connection.alias, tuple(values), tuple(guard), len(images), tuple(finished))
    sql = _GUARDED_SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        meta = ImageTask._meta
        sets = ", ".join(f"{qn(task_fields[name].column)} = %s" for name in values)
        where = "".join(f" AND {qn(task_fields[name].column)} IS NOT DISTINCT FROM "
                        f"{_cast(connection, task_fields[name])}" for name in guard)
        watched = qn(task_fields["watched_until"].column)
        event_casts = ", ".join(_cast(connection, f) for f in event_fields)
        # Only the models' own table and column names (quoted) and types are built in;
        # every value is a parameter.
        sql = (
            f"WITH updated AS (UPDATE {qn(meta.db_table)} SET {sets} "  # noqa: S608
            f"WHERE {qn(meta.pk.column)} = %s{where} "
            f"RETURNING {qn(meta.pk.column)} AS id, {watched} AS watched), "
            f"recorded AS ({_insert_into(connection, TaskEvent, event_fields)} "
            f"SELECT updated.id, {event_casts} FROM updated "
            f"RETURNING {qn(TaskEvent._meta.pk.column)} AS id)"
        )
        if images:
            row = "(" + ", ".join(_cast(connection, f) for f in image_fields) + ")"
            names = ", ".join(f"c{i}" for i in range(len(image_fields)))
            sql += (
                f", stored AS ({_insert_into(connection, GeneratedImage, image_fields)} "  # noqa: S608
                f"SELECT updated.id, image.* FROM updated, "
                f"(VALUES {', '.join([row] * len(images))}) AS image ({names}) "
                "ON CONFLICT DO NOTHING)"
            )
        if finished:
            event_meta = TaskEvent._meta
            sets = ", ".join(f"{qn(event_by_name[name].column)} = %s" for name in finished)
            sql += (f", finished AS (UPDATE {qn(event_meta.db_table)} "  # noqa: S608
                    f"SET {sets} WHERE {qn(event_meta.pk.column)} = %s "
                    "AND EXISTS (SELECT 1 FROM updated))")
        sql += " SELECT recorded.id, updated.watched FROM recorded, updated"
        _GUARDED_SQL[key] = sql
    params = [task_fields[name].get_db_prep_save(value, connection)
              for name, value in values.items()]
    params.append(ImageTask._meta.pk.get_db_prep_value(task.pk, connection))
    params += [task_fields[name].get_db_prep_save(value, connection)
               for name, value in guard.items()]
    params += _insert_params(event, event_fields, connection)
    for image in images:
        params += _insert_params(image, image_fields, connection)
    if finish is not None:
        params += [event_by_name[name].get_db_prep_save(value, connection)
                   for name, value in finished.items()]
        params.append(TaskEvent._meta.pk.get_db_prep_value(finish[0].pk, connection))
    with transaction.atomic(using=connection.alias) if connection.in_atomic_block \
            else contextlib.nullcontext(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    _stored(event, row[0], connection.alias)
    task.watched_until = row[1]
    return True


@functools.cache
def _fields_by_name(model: type[Model]) -> dict[str, Field]:
    """The concrete fields of ``model`` by name (looked up once per process)."""
    return {f.name: f for f in model._meta.concrete_fields}


@functools.cache
def _inserted_fields(model: type[Model]) -> list[Field]:
    """The columns of ``model`` an insert of one of its rows gives, but its task's (looked
    up once per process)."""
    return [f for f in model._meta.concrete_fields
            if not f.primary_key and f.name != "task"]


def _insert_params(obj: Model, fields: list[Field], connection: Any) -> list[Any]:
    return [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in fields]
