"""Thank-you templates: language, greeting, what was bought, money, escaping, the sandbox."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateNotFound, UndefinedError
from jinja2.exceptions import SecurityError

from services.engagement.rendering import Renderer, format_money

CONTEXT: dict[str, Any] = {
    "purchase_id": "p-77",
    "total": {"amount": "1250000", "currency": "VND"},
    "items": [{"name": "Green tea", "quantity": 2}, {"name": "Lotus cake", "quantity": 1}],
}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def test_english_names_the_customer_and_what_they_bought(renderer: Renderer) -> None:
    message = renderer.render("thank_you", language="en", context={**CONTEXT, "name": "Lan"})
    assert message.subject == "Thank you for your purchase, Lan"
    assert message.text.startswith("Hi Lan,\n")
    assert "2 x Green tea" in message.text
    assert "1 x Lotus cake" in message.text
    assert "Total paid: VND 1,250,000" in message.text
    assert "p-77" in message.text


def test_vietnamese_greets_in_vietnamese(renderer: Renderer) -> None:
    message = renderer.render("thank_you", language="vi", context={**CONTEXT, "name": "Lan"})
    assert message.subject == "Cảm ơn Lan đã mua sắm cùng chúng tôi"
    assert message.text.startswith("Chào Lan,\n")
    assert "Tổng thanh toán: 1.250.000 VND" in message.text
    assert "2 x Green tea" in message.text


@pytest.mark.parametrize(
    ("language", "greeting", "subject"),
    [
        ("en", "Hello,", "Thank you for your purchase"),
        ("vi", "Chào bạn,", "Cảm ơn bạn đã mua sắm cùng chúng tôi"),
    ],
)
def test_unknown_name_gets_a_polite_greeting(
    renderer: Renderer, language: str, greeting: str, subject: str
) -> None:
    message = renderer.render("thank_you", language=language, context={**CONTEXT, "name": None})
    assert message.subject == subject
    assert message.text.startswith(greeting + "\n")
    assert "None" not in message.text + message.subject


@pytest.mark.parametrize(("language", "chosen"), [("vi-VN", "vi"), ("fr", "en"), (None, "en")])
def test_language_falls_back_to_primary_tag_then_english(
    renderer: Renderer, language: str | None, chosen: str
) -> None:
    assert renderer.language_for("thank_you", language) == chosen


def test_a_purchase_without_line_names_lists_nothing(renderer: Renderer) -> None:
    context = {**CONTEXT, "items": [], "name": "Lan"}
    message = renderer.render("thank_you", language="en", context=context)
    assert "What you bought" not in message.text
    assert message.html is not None
    assert "<ul>" not in message.html


def test_html_alternative_escapes_what_customers_typed(renderer: Renderer) -> None:
    hostile = '<script>alert("x")</script>'
    context = {**CONTEXT, "name": hostile, "items": [{"name": "<b>Tea</b>", "quantity": 1}]}
    message = renderer.render("thank_you", language="en", context=context)
    assert message.html is not None
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in message.html
    assert "&lt;b&gt;Tea&lt;/b&gt;" in message.html
    assert hostile in message.text  # plain text is not HTML: shown as typed


def test_subject_is_one_line_whatever_the_name(renderer: Renderer) -> None:
    message = renderer.render(
        "thank_you", language="en", context={**CONTEXT, "name": "Lan\nBcc: x"}
    )
    assert message.subject == "Thank you for your purchase, Lan Bcc: x"


@pytest.mark.parametrize(
    ("amount", "currency", "language", "expected"),
    [
        ("42.5", "EUR", "en", "EUR 42.50"),
        ("1234567.891", "USD", "en", "USD 1,234,567.89"),
        ("1250000", "VND", "vi", "1.250.000 VND"),
        ("99.995", "EUR", "vi", "100,00 EUR"),
        ("1000", "JPY", "en", "JPY 1,000"),
    ],
)
def test_money_is_formatted_for_the_language(
    amount: str, currency: str, language: str, expected: str
) -> None:
    assert format_money(Decimal(amount), currency, language) == expected


def _renderer_with(tmp_path: Path, body: str) -> Renderer:
    (tmp_path / "probe.en.txt").write_text("Subject\n" + body)
    return Renderer(tmp_path)


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ total.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.system('true') }}",
    ],
)
def test_a_template_cannot_reach_python_internals(tmp_path: Path, attack: str) -> None:
    renderer = _renderer_with(tmp_path, attack)
    with pytest.raises(SecurityError):
        renderer.render("probe", language="en", context={"total": {"amount": "1"}})


def test_a_misspelt_variable_fails_loudly(tmp_path: Path) -> None:
    renderer = _renderer_with(tmp_path, "Hi {{ nmae }}")
    with pytest.raises(UndefinedError):
        renderer.render("probe", language="en", context={"name": "Lan"})


def test_a_missing_template_is_an_error(renderer: Renderer) -> None:
    with pytest.raises(TemplateNotFound):
        renderer.render("no_such_journey", language="en", context={})
