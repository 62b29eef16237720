"""How a function serves a model: `model:` (what to load) and `batching:` (how calls group)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The built-in architectures, spelled out so that validating a stack file needs no torch;
# tests/models checks that this stays equal to nuvem.models.architectures.names().
BUILTIN_ARCHS = ("densenet161", "resnet18")
MODEL_HANDLER = "nuvem.models.handler:ModelHandler"
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
)
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One input or output of a model, as /v2/models/{name} describes it."""

    name: str
    datatype: Literal[DATATYPES] = "FP32"  # type: ignore[valid-type]
    shape: tuple[int, ...] = Field(description="-1 marks a variable dimension (the batch)")


class ModelSpec(_Strict):
    """A built-in architecture with its weights, or a model file of your own."""

    arch: str | None = Field(default=None, description="built-in: resnet18 or densenet161")
    weights: str | None = Field(default=None, description="path or http(s) URL of the weights")
    sha256: str | None = Field(default=None, description="expected sha256 (or a prefix) of URL")
    path: str | None = Field(
        default=None,
        description="your own model: .onnx, torch.export .pt2 or TorchScript .pt",
    )
    name: str | None = Field(default=None, description="model name; defaults to the function's")
    version: str = Field(default="1", description="model version, e.g. '2'")
    default: bool = Field(default=False, description="the version served when none is asked")
    engine: Literal["torch", "onnxruntime"] | None = Field(
        default=None, description="torch (eager/TorchScript) or onnxruntime; by file type"
    )
    labels: str | None = Field(default=None, description="class names, one per line, or JSON")
    top_k: int = Field(default=5, ge=1, le=1000, description="classes a prediction returns")
    threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="intra-op threads per replica, fixed; unset, they follow the node's load",
    )
    inputs: tuple[TensorSpec, ...] = Field(default=(), description="for TorchScript files")
    outputs: tuple[TensorSpec, ...] = Field(default=(), description="for TorchScript files")

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # YAML reads `version: 2` as an int; the protocol's versions are strings.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError(
                f"model version {value!r} is invalid; use letters, digits, '.', '_' or '-', "
                'e.g. "2"'
            )
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _MODEL_NAME.match(value):
            raise ValueError(
                f"model name {value!r} is invalid; use letters, digits, '.', '_' or '-'"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> ModelSpec:
        if (self.arch is None) == (self.path is None):
            raise ValueError(
                "set either `arch` (a built-in: resnet18, densenet161) with `weights`, "
                "or `path` (an .onnx or TorchScript file of your own)"
            )
        if self.arch is not None:
            if self.arch not in BUILTIN_ARCHS:
                raise ValueError(
                    f"unknown architecture {self.arch!r}; choose one of: "
                    f"{', '.join(BUILTIN_ARCHS)}, or give `path` to a model file"
                )
            if not self.weights:
                raise ValueError(
                    f"{self.arch} needs `weights`: a .pth/.safetensors path or an https URL "
                    f"(e.g. https://download.pytorch.org/models/resnet18-f37072fd.pth); "
                    "nuvem never serves a randomly initialised model"
                )
        elif self.weights is not None:
            raise ValueError("`weights` is for built-in architectures; a model file is `path`")
        if self.path is not None and self.model_format() in ("torchscript", "exported"):
            if not self.inputs or not self.outputs:
                raise ValueError(
                    "a TorchScript (.pt) or torch.export (.pt2) model needs `inputs` and "
                    "`outputs` (name, datatype, shape), since nuvem cannot read them from it"
                )
            if self.engine == "onnxruntime":
                raise ValueError("engine onnxruntime needs an .onnx file")
        return self

    def model_format(self) -> Literal["builtin", "onnx", "exported", "torchscript"]:
        if self.arch is not None:
            return "builtin"
        assert self.path is not None
        suffix = self.path.lower().rsplit(".", 1)[-1]
        return {"onnx": "onnx", "pt2": "exported"}.get(suffix, "torchscript")  # type: ignore[return-value]

    def resolved_engine(self) -> str:
        if self.engine is not None:
            return self.engine
        return "onnxruntime" if self.model_format() == "onnx" else "torch"

    def is_url(self) -> bool:
        return self.weights is not None and self.weights.startswith(("http://", "https://"))

    def local_files(self) -> dict[str, str]:
        """The files this model reads from disk, by field name (URLs excluded)."""
        files = {"path": self.path, "labels": self.labels}
        if not self.is_url():
            files["weights"] = self.weights
        return {key: value for key, value in files.items() if value}

    def resolved(self, root: Path) -> ModelSpec:
        """Relative file paths made absolute against the stack file's folder."""
        update = {
            key: str((root / Path(value).expanduser()).resolve())
            for key, value in self.local_files().items()
        }
        return self.model_copy(update=update)

    def missing_file(self) -> tuple[str, str] | None:
        """The first (field, path) that does not name a readable file, else None."""
        for key, value in self.local_files().items():
            path = Path(value)
            if not path.is_absolute() or not path.is_file() or not os.access(path, os.R_OK):
                return key, value
        return None


class Batching(_Strict):
    """Calls that arrive together run as one `predict(batch)`."""

    max_batch_size: int = Field(default=8, ge=1, le=4096, description="calls per batch")
    # 0, as in Triton. Whatever it is, a batch waits only while the gateway has calls of
    # the function queued that can still reach this replica: a lone call runs at once.
    max_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=60_000,
        description="how long a batch waits to fill up while more calls are queued",
    )


def intra_op_threads(model: ModelSpec, cpu: float, cpu_given: bool, replicas: int = 1) -> int:
    """Threads one replica's inference uses: `model.threads`, else `resources.cpu` when the
    stack sets it, else the machine's cores shared among the replicas it keeps (`replicas`,
    scaling.min), so that replicas do not fight over cores."""
    if model.threads is not None:
        return model.threads
    if cpu_given:
        return max(1, math.ceil(cpu))
    return max(1, (os.cpu_count() or 1) // max(1, replicas))


def threads_follow_load(model: ModelSpec, cpu_given: bool) -> bool:
    """Whether a replica's threads change call by call with how many replicas of its node
    are busy (models/core_policy.py): unless the stack fixes them with `model.threads` or
    reserves CPUs with `resources.cpu`."""
    return model.threads is None and not cpu_given


def serving_defaults(data: Any) -> Any:
    """Defaults a model or batching implies, applied to a function's raw fields.

    A function with `model:` needs no handler: the built-in model handler serves it. With
    `batching:` a replica must hold enough calls to fill a batch, so `max_inflight` defaults
    to twice the batch size (a batch running, the next one filling).
    """
    if not isinstance(data, dict):
        return data
    if data.get("model") is not None and not data.get("handler"):
        data = {**data, "handler": MODEL_HANDLER}
    batching = data.get("batching")
    if batching is not None and "max_inflight" not in data:
        size = (
            batching.max_batch_size
            if isinstance(batching, Batching)
            else batching.get("max_batch_size", Batching().max_batch_size)
            if isinstance(batching, dict)
            else None
        )
        if isinstance(size, int) and size >= 1:
            data = {**data, "max_inflight": max(4, 2 * size)}
    return data
