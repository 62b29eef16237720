"""The model of a whole stack file."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from nuvem.stack.cluster import Cluster
from nuvem.stack.function import FunctionSpec, Strict
from nuvem.stack.store_urls import Stores


class Stack(Strict):
    version: str = Field(default="1", description="stack file format version")
    functions: dict[str, FunctionSpec] = Field(default_factory=dict)
    stores: Stores = Field(default_factory=Stores, description="job queue and records")
    cluster: Cluster = Field(
        default_factory=Cluster, description="where replicas run: engine local or ray"
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # YAML reads `version: 1` as an int; that is what everyone writes.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("functions"), dict):
            functions = {}
            for name, body in data["functions"].items():
                if isinstance(body, dict):
                    given = body.get("name", body.get("service", name))
                    if given != name:
                        raise ValueError(
                            f"function {name!r} sets name {given!r}; the key is the name, "
                            "remove `name:` or rename the key"
                        )
                    body = {**body, "name": name}
                functions[name] = body
            data = {**data, "functions": functions}
        return data
