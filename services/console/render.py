"""Pages from Jinja2 templates, every value escaped; and a JSON document as nested HTML in which
every value carries its JSON pointer, so that the values an error or warning names stand out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import orjson
from aiohttp import web
from markupsafe import Markup, escape

TEMPLATES = Path(__file__).parent / "templates"

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
)


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session = request.get("session")
    html = environment.get_template(template).render(session=session, path=request.path, **context)
    return web.Response(text=html, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})  # fmt: skip


def see_other(target: str) -> web.Response:
    return web.Response(status=303, headers={"Location": target})


def pointer_part(key: str | int) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def json_html(value: Any, pointer: str, marked: dict[str, str]) -> Markup:
    """`value` as HTML; a node whose pointer is in `marked` gets the class given there
    (`error` or `warning`) and the pointer as its id-like data attribute."""
    mark = marked.get(pointer)
    attrs = Markup(' data-pointer="{}"').format(pointer)
    if mark:
        attrs += Markup(' class="{}" tabindex="0"').format(mark)
    if isinstance(value, dict | list) and not value:
        return Markup("<span{}>{}</span>").format(attrs, "{}" if isinstance(value, dict) else "[]")
    if isinstance(value, dict):
        items = Markup("").join(
            Markup("<li><span class=key>{}</span>: {}</li>").format(
                orjson.dumps(k).decode(), json_html(v, f"{pointer}/{pointer_part(k)}", marked)
            )
            for k, v in value.items()
        )
        return Markup("<span{}>{{<ul>{}</ul>}}</span>").format(attrs, items)
    if isinstance(value, list):
        items = Markup("").join(
            Markup("<li>{}</li>").format(json_html(v, f"{pointer}/{i}", marked)) for i, v in enumerate(value)
        )
        return Markup("<span{}>[<ul>{}</ul>]</span>").format(attrs, items)
    return Markup("<span{}>{}</span>").format(attrs, escape(orjson.dumps(value).decode()))


def unix_ms(value: int) -> str:
    """A time in Unix milliseconds as ISO 8601 UTC, as the ledger's other times are shown."""
    return datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


environment.globals["json_html"] = json_html
environment.filters["unix_ms"] = unix_ms
