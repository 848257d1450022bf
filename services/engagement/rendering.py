"""Personalised messages from template files, rendered in a sandbox.

A template is ``templates/<name>.<language>.txt``: the first line is the
subject, the rest the plain-text body. An optional ``<name>.<language>.html``
beside it is the HTML alternative, autoescaped. The customer's language picks
the files; ``en`` is the fallback. Templates run in Jinja's sandbox with strict
undefined variables, so a template (which marketing staff will edit) can reach
neither Python internals nor silently print nothing for a misspelt name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateNotFound, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True, slots=True)
class _MoneyStyle:
    group: str
    decimal: str
    code_first: bool


_MONEY_STYLES = {
    "en": _MoneyStyle(group=",", decimal=".", code_first=True),
    "vi": _MoneyStyle(group=".", decimal=",", code_first=False),
}
# ISO 4217 minor units where they differ from 2.
_MINOR_UNITS = {"VND": 0, "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3}


def format_money(amount: Decimal, currency: str, language: str | None) -> str:
    """``EUR 1,250.50`` in English, ``1.250.000 VND`` in Vietnamese."""
    digits = _MINOR_UNITS.get(currency, 2)
    rounded = amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    style = _MONEY_STYLES.get(_primary(language), _MONEY_STYLES[DEFAULT_LANGUAGE])
    number = f"{rounded:,.{digits}f}".translate(str.maketrans(",.", style.group + style.decimal))
    return f"{currency} {number}" if style.code_first else f"{number} {currency}"


@pass_context
def _money_filter(context: Context, money: Mapping[str, str]) -> str:
    return format_money(Decimal(money["amount"]), money["currency"], context.get("language"))


def _primary(language: str | None) -> str:
    return (language or DEFAULT_LANGUAGE).split("-")[0].lower()


def _candidates(language: str | None) -> Iterator[str]:
    if language:
        yield language
        yield _primary(language)
    yield DEFAULT_LANGUAGE


class Renderer:
    def __init__(self, directory: Path = TEMPLATES) -> None:
        self._loader = FileSystemLoader(directory)
        self._env = SandboxedEnvironment(
            loader=self._loader,
            autoescape=lambda name: name is not None and name.endswith(".html"),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters["money"] = _money_filter
        self._names = frozenset(self._env.list_templates())
        self._compiled: dict[str, tuple[Template, Template]] = {}

    def language_for(self, template: str, language: str | None) -> str:
        """The customer's language if the template exists in it, else the fallback."""
        for candidate in _candidates(language):
            if f"{template}.{candidate}.txt" in self._names:
                return candidate
        raise TemplateNotFound(f"{template}.{DEFAULT_LANGUAGE}.txt")

    def render(
        self, template: str, *, language: str | None, context: Mapping[str, Any]
    ) -> RenderedMessage:
        """Raises ``jinja2.TemplateError`` (a ``SecurityError`` for a sandbox breach)."""
        chosen = self.language_for(template, language)
        variables = {**context, "language": chosen}
        subject, body = self._text_parts(f"{template}.{chosen}.txt")
        html_name = f"{template}.{chosen}.html"
        html = None
        if html_name in self._names:
            html = self._env.get_template(html_name).render(variables)
        return RenderedMessage(
            subject=" ".join(subject.render(variables).split()),
            text=body.render(variables).strip() + "\n",
            html=html,
        )

    def _text_parts(self, name: str) -> tuple[Template, Template]:
        """Subject and body compiled apart, so nothing a variable holds can move the line."""
        if name not in self._compiled:
            source, _, _ = self._loader.get_source(self._env, name)
            subject, _, body = source.partition("\n")
            # The newline kept in front of the body keeps error line numbers true.
            self._compiled[name] = (
                self._env.from_string(subject),
                self._env.from_string("\n" + body),
            )
        return self._compiled[name]
