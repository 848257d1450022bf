"""Personalised messages from template files, rendered in a sandbox.

A built-in template is ``templates/<name>.<language>.txt``: the first line is
the subject, the rest the plain-text body. An optional ``<name>.<language>.html``
beside it is the HTML alternative, autoescaped. Operators can store templates
per name, language and channel (``templates_store``); a stored one wins over
the file of the same language, and a channel with no template of its own uses
the e-mail one. The customer's language picks; ``en`` is the fallback.
Templates run in Jinja's sandbox with strict undefined variables, so a template
(which marketing staff will edit) can reach neither Python internals nor
silently print nothing for a misspelt name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
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
class StoredTemplate:
    """An operator's template as the sender uses it (a snapshot of the row)."""

    id: str
    name: str
    language: str
    channel: str
    subject: str
    body: str
    html: str | None
    version: int


Stored = Mapping[tuple[str, str, str], StoredTemplate]


@cache
def builtin_names(directory: Path = TEMPLATES) -> frozenset[str]:
    """Names of the built-in templates (``thank_you`` for ``thank_you.en.txt``)."""
    return frozenset(p.name.split(".")[0] for p in directory.glob("*.txt"))


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
        # Compiled once and kept, like the built-in files (no reload while running);
        # a stored template's key carries its version.
        self._compiled: dict[str, tuple[Template, Template]] = {}
        self._compiled_html: dict[str, Template] = {}
        self._html_env: SandboxedEnvironment | None = None

    def language_for(self, template: str, language: str | None) -> str:
        """The customer's language if the template exists in it, else the fallback."""
        for candidate in _candidates(language):
            if f"{template}.{candidate}.txt" in self._names:
                return candidate
        raise TemplateNotFound(f"{template}.{DEFAULT_LANGUAGE}.txt")

    def render(
        self,
        template: str,
        *,
        language: str | None,
        context: Mapping[str, Any],
        channel: str = "email",
        stored: Stored | None = None,
    ) -> RenderedMessage:
        """Raises ``jinja2.TemplateError`` (a ``SecurityError`` for a sandbox breach).

        Per language in order of preference: a stored template for the channel, a
        stored e-mail template, then the built-in file.
        """
        for candidate in _candidates(language):
            for kind in dict.fromkeys((channel, "email")):
                found = (stored or {}).get((template, candidate, kind))
                if found is not None:
                    return self.render_stored(found, context=context)
            if f"{template}.{candidate}.txt" in self._names:
                return self._render_file(template, candidate, context)
        raise TemplateNotFound(f"{template}.{DEFAULT_LANGUAGE}.txt")

    def render_stored(
        self, template: StoredTemplate, *, context: Mapping[str, Any]
    ) -> RenderedMessage:
        key = f"stored:{template.id}:{template.version}"
        if key not in self._compiled:
            self._compiled[key] = (
                self._env.from_string(template.subject),
                self._env.from_string(template.body),
            )
            if template.html is not None:
                self._compiled_html[key] = self.html_env.from_string(template.html)
        subject, body = self._compiled[key]
        variables = {**context, "language": template.language}
        html = None
        if template.html is not None:
            html = self._compiled_html[key].render(variables)
        return RenderedMessage(
            subject=" ".join(subject.render(variables).split()),
            text=body.render(variables).strip() + "\n",
            html=html,
        )

    @property
    def html_env(self) -> SandboxedEnvironment:
        """The environment for stored HTML: like the file one, but always autoescaped."""
        if self._html_env is None:
            self._html_env = self._env.overlay(autoescape=True)
        return self._html_env

    def check(self, source: str, *, html: bool = False) -> Template:
        """Compile ``source`` in the sandbox (raises ``TemplateSyntaxError``)."""
        return (self.html_env if html else self._env).from_string(source)

    def _render_file(
        self, template: str, chosen: str, context: Mapping[str, Any]
    ) -> RenderedMessage:
        variables = {**context, "language": chosen}
        subject, body = self._text_parts(f"{template}.{chosen}.txt")
        html_name = f"{template}.{chosen}.html"
        html = None
        if html_name in self._names:
            if html_name not in self._compiled_html:
                self._compiled_html[html_name] = self._env.get_template(html_name)
            html = self._compiled_html[html_name].render(variables)
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
