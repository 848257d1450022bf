from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Question(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    kind: Literal["nps", "csat", "text", "single_choice", "multiple_choice"]
    text: dict[str, str] = Field(
        min_length=1, description='Question text per language, e.g. {"en": "...", "vi": "..."}'
    )
    choices: list[str] = Field(default_factory=list, max_length=50)


class SurveyCreate(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["nps", "csat", "custom"]
    questions: list[Question] = Field(min_length=1, max_length=50)


class SurveyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    kind: str
    version: int
    questions: list[Question]
    created_at: datetime
