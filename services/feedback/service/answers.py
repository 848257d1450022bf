"""Answers checked against the questions of the version they answer, and scored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from services.feedback.service.errors import InvalidAnswers

MAX_TEXT = 2000

Kind = Literal["nps", "csat", "custom"]
Category = Literal["promoter", "passive", "detractor", "satisfied", "neutral", "dissatisfied"]


@dataclass(frozen=True)
class Scored:
    answers: dict[str, Any]
    nps_score: int | None
    csat_score: int | None
    comment: str | None

    @property
    def category(self) -> Category | None:
        if self.nps_score is not None:
            return nps_category(self.nps_score)
        if self.csat_score is not None:
            return csat_category(self.csat_score)
        return None

    @property
    def kind(self) -> Kind:
        if self.nps_score is not None:
            return "nps"
        return "csat" if self.csat_score is not None else "custom"


def nps_category(score: int) -> Category:
    """0-6 detractor, 7-8 passive, 9-10 promoter (the standard NPS bands)."""
    if score <= 6:
        return "detractor"
    return "passive" if score <= 8 else "promoter"


def csat_category(score: int) -> Category:
    if score <= 2:
        return "dissatisfied"
    return "neutral" if score == 3 else "satisfied"


def score(questions: list[dict[str, Any]], answers: dict[str, Any]) -> Scored:
    """Validate every answer; the first NPS / CSAT question gives the response its score."""
    by_id = {q["id"]: q for q in questions}
    unknown = sorted(set(answers) - set(by_id))
    if unknown:
        raise InvalidAnswers(f"no such question(s) in this survey version: {unknown}")
    for question_id, value in answers.items():
        _check(by_id[question_id], value)
    return Scored(
        answers=dict(answers),
        nps_score=_first(questions, answers, "nps"),
        csat_score=_first(questions, answers, "csat"),
        comment=_comment(questions, answers),
    )


def _check(question: dict[str, Any], value: Any) -> None:
    kind, qid = question["kind"], question["id"]
    if kind == "nps":
        _check_int(qid, value, 0, 10)
    elif kind == "csat":
        _check_int(qid, value, 1, 5)
    elif kind == "text":
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise InvalidAnswers(f"{qid!r} takes text of at most {MAX_TEXT} characters")
        if "\x00" in value:
            raise InvalidAnswers(f"{qid!r} takes text without NUL (\\u0000) characters")
    elif kind == "single_choice":
        if value not in question["choices"]:
            raise InvalidAnswers(f"{qid!r} takes one of {question['choices']}")
    elif not isinstance(value, list) or not set(value) <= set(question["choices"]):
        raise InvalidAnswers(f"{qid!r} takes a list drawn from {question['choices']}")


def _check_int(qid: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidAnswers(f"{qid!r} takes a whole number from {low} to {high}")


def _first(questions: list[dict[str, Any]], answers: dict[str, Any], kind: str) -> int | None:
    for question in questions:
        if question["kind"] == kind and question["id"] in answers:
            return int(answers[question["id"]])
    return None


def _comment(questions: list[dict[str, Any]], answers: dict[str, Any]) -> str | None:
    texts = [answers[q["id"]] for q in questions if q["kind"] == "text" and answers.get(q["id"])]
    return "\n".join(texts) if texts else None
