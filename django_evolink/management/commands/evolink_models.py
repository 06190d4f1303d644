"""``manage.py evolink_models [--json]``: the models this site allows and their parameters."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.translation import gettext as _

from ...evolink import catalogue


def _allowed(schema: dict[str, Any]) -> str:
    """A short text of what one parameter allows."""
    if "enum" in schema:
        return ", ".join(str(v) for v in schema["enum"])
    if "anyOf" in schema:
        ratios: list[Any] = next((alt["enum"] for alt in schema["anyOf"] if "enum" in alt), [])
        return ", ".join([*map(str, ratios), "WIDTHxHEIGHT"])
    parts = []
    if "minimum" in schema or "maximum" in schema:
        parts.append(f"{schema.get('minimum', '')}..{schema.get('maximum', '')}")
    if "minItems" in schema or "maxItems" in schema:
        parts.append(_("%(min)s to %(max)s items")
                     % {"min": schema.get("minItems", 0), "max": schema.get("maxItems", "?")})
    if "maxLength" in schema:
        parts.append(_("at most %(max)d characters") % {"max": schema["maxLength"]})
    if "x-max-tokens" in schema:
        parts.append(_("about %(max)d tokens (checked by Evolink)")
                     % {"max": schema["x-max-tokens"]})
    return "; ".join(parts)


class Command(BaseCommand):
    help = _("List the Evolink models this site allows and their parameters (--json: the "
             "same as GET models/).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true",
                            help=_("Print the JSON that GET models/ answers."))

    def handle(self, *args: Any, json: bool = False, **options: Any) -> None:
        models = catalogue.model_list()
        if json:
            self.stdout.write(_dumps(models))
            return
        for model in models:
            schema = model["parameters"]
            marker = _(" (default)") if model["default"] else ""
            self.stdout.write(f"{model['name']}{marker}")
            required = set(schema.get("required", ()))
            for name, prop in schema["properties"].items():
                if name == "model":
                    continue
                flag = _("required") if name in required else _("optional")
                kind = prop.get("type", "")
                self.stdout.write(f"  {name:<16} {kind:<8} {flag:<9} {_allowed(prop)}".rstrip())


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
