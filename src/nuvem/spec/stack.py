"""The model of a whole stack file."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from nuvem.spec.function import FunctionSpec, Strict


class Stack(Strict):
    version: str = Field(default="1", description="stack file format version")
    functions: dict[str, FunctionSpec] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("functions"), dict):
            functions = {}
            for name, body in data["functions"].items():
                if isinstance(body, dict):
                    body = {"name": name, **body}
                functions[name] = body
            data = {**data, "functions": functions}
        return data
