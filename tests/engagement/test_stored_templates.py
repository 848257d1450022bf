"""Which template a message uses: stored per channel and language, then the built-in file."""

from __future__ import annotations

from dataclasses import replace

from services.engagement.rendering import Renderer, StoredTemplate

CONTEXT = {"name": "Lan", "risk": 0.8}


def stored(language: str, channel: str, subject: str, body: str = "Body") -> StoredTemplate:
    return StoredTemplate(
        id=f"{language}-{channel}",
        name="win_back",
        language=language,
        channel=channel,
        subject=subject,
        body=body,
        html=None,
        version=1,
    )


def _index(*templates: StoredTemplate) -> dict[tuple[str, str, str], StoredTemplate]:
    return {(t.name, t.language, t.channel): t for t in templates}


def test_a_stored_template_wins_over_the_file_of_its_language() -> None:
    templates = _index(stored("vi", "email", "Stored {{ name }}"))
    message = Renderer().render("win_back", language="vi", context=CONTEXT, stored=templates)
    assert message.subject == "Stored Lan"


def test_a_channel_without_its_own_template_uses_the_email_one() -> None:
    templates = _index(
        stored("en", "email", "E-mail", body="by mail"), stored("en", "push", "P", "by push")
    )
    renderer = Renderer()
    by_sms = renderer.render(
        "win_back", language="en", context=CONTEXT, channel="sms", stored=templates
    )
    by_push = renderer.render(
        "win_back", language="en", context=CONTEXT, channel="push", stored=templates
    )
    assert (by_sms.text, by_push.text) == ("by mail\n", "by push\n")


def test_the_customers_language_file_beats_a_stored_fallback_language() -> None:
    templates = _index(stored("en", "email", "Stored English"))
    message = Renderer().render("win_back", language="vi", context=CONTEXT, stored=templates)
    assert message.subject == "Chúng tôi nhớ bạn, Lan"  # the built-in Vietnamese file


def test_a_new_version_is_compiled_afresh() -> None:
    renderer = Renderer()
    first = stored("en", "email", "One")
    assert renderer.render_stored(first, context=CONTEXT).subject == "One"
    second = replace(first, subject="Two", version=2)
    assert renderer.render_stored(second, context=CONTEXT).subject == "Two"


def test_stored_html_is_compiled_once_per_version_and_autoescaped() -> None:
    renderer = Renderer()
    first = replace(stored("en", "email", "One"), html="<p>{{ name }} v1</p>")
    hostile = {**CONTEXT, "name": "<b>Lan</b>"}
    assert renderer.render_stored(first, context=hostile).html == "<p>&lt;b&gt;Lan&lt;/b&gt; v1</p>"
    assert renderer.render_stored(first, context=CONTEXT).html == "<p>Lan v1</p>"
    second = replace(first, html="<p>{{ name }} v2</p>", version=2)
    assert renderer.render_stored(second, context=CONTEXT).html == "<p>Lan v2</p>"
    assert renderer.render_stored(first, context=CONTEXT).html == "<p>Lan v1</p>"
