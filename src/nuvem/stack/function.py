"""The model of one function as declared in a stack file or posted to the gateway."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nuvem.stack.async_jobs import AsyncJobs
from nuvem.stack.container import (
    DEFAULT_PORT,
    FIELDS,
    check_container,
    check_health,
    check_image,
)
from nuvem.stack.container_build import BUNDLE_VERSION_LABEL, BuildSpec, image_tag
from nuvem.stack.model import Batching, ModelSpec, serving_defaults
from nuvem.stack.units import parse_duration, parse_memory

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_COMMENT = re.compile(r"(^|\s)#.*$")


def _scalar_text(value: Any) -> Any:
    """YAML reads `DEBUG: true` as a bool; give the process the text the user wrote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    # Anything else (a list, a mapping) is left for the model to reject as not text.
    return value


def text_mapping(value: Any) -> Any:
    """A mapping's keys and scalar values as the text the user wrote (env, labels)."""
    if isinstance(value, dict):
        return {str(k): _scalar_text(v) for k, v in value.items()}
    return value


def _duration_or_zero(value: Any) -> Any:
    if value in (0, "0", "0s"):
        return 0.0
    return parse_duration(value)


Seconds = Annotated[float, BeforeValidator(parse_duration)]
SecondsOrZero = Annotated[float, BeforeValidator(_duration_or_zero)]
ScalingMode = Literal["concurrency", "rps", "queue"]
Bytes = Annotated[int, BeforeValidator(parse_memory), PlainSerializer(int)]
# Whole counts serialize as integers, as they did when only whole GPUs existed: the spec's
# fingerprint (and so its running replicas) must not change when nuvem is upgraded.
Gpus = Annotated[float, PlainSerializer(lambda v: int(v) if float(v).is_integer() else v)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(Strict):
    cpu: float = Field(default=1.0, gt=0, description="CPU cores one replica needs")
    memory: Bytes | None = Field(default=None, description="memory limit per replica, e.g. 512Mi")
    gpu: Gpus = Field(
        default=0,
        ge=0,
        description="GPUs one replica needs; a fraction below 1 shares a device (0.5: two "
        "replicas per GPU), more than 1 must be whole",
    )

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: float) -> float:
        if value > 1 and not value.is_integer():
            raise ValueError(
                f"gpu {value:g} is more than one device but not a whole number; use a "
                "fraction below 1 to share a device, or a whole count"
            )
        return value


class Placement(Strict):
    """Where replicas may run on a cluster (cluster: {engine: ray}); the local engine has
    one node, which has every label."""

    labels: dict[str, str] = Field(
        default_factory=dict, description="node labels a replica's node must carry, e.g. pool: gpu"
    )
    spread: bool = Field(default=False, description="spread replicas over as many nodes as fit")

    @field_validator("labels", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        return text_mapping(value)


# Validation context key set by the stack file loader (see `Scaling._meant`).
STACK_FILE = "stack_file"
# Settings only the autoscaler reads: writing one asks for autoscaling.
_AUTOSCALER_ONLY = frozenset(
    {"target", "panic_window_s", "stable_window_s", "scale_down_delay_s", "zero_after_s"}
)


class Scaling(Strict):
    """Replica bounds and the autoscaler's settings (docs/autoscaling.md).

    Without `mode` replicas change only by `nuvem scale` or an alert; with it the controller
    sizes the function to its load every tick, and `nuvem scale` is a one-off nudge. In a
    stack file `mode` defaults to concurrency when `min` is 0, a `max` above `min` is
    written, or an autoscaler setting is written.
    """

    min: int = Field(default=1, ge=0, description="replicas kept at least")
    max: int = Field(default=8, ge=1, description="replicas allowed at most")
    mode: ScalingMode | None = Field(
        default=None,
        description="load the autoscaler follows: concurrency (calls in flight and queued), "
        "rps (requests per second) or queue (calls waiting); unset: no autoscaling, "
        "unless min is 0, max above min or an autoscaler setting is written (then "
        "concurrency)",
    )
    target: float | None = Field(
        default=None,
        gt=0,
        description="load one replica should carry; defaults: concurrency max_inflight, "
        "queue 1; rps needs it",
    )
    panic_window_s: Seconds = Field(default=2.0, description="a burst is acted on within this")
    stable_window_s: Seconds = Field(default=60.0, description="scale-down follows this average")
    scale_down_delay_s: SecondsOrZero = Field(
        default=30.0, description="scale down once the load has needed fewer for this long"
    )
    zero_after_s: Seconds = Field(
        default=300.0, description="idle this long and min is 0: go to zero replicas"
    )

    @model_validator(mode="before")
    @classmethod
    def _meant(cls, data: Any, info: ValidationInfo) -> Any:
        """What a stack file's author meant: a function allowed to be at zero, or told when
        to go there, can only come back by autoscaling, so it gets `mode: concurrency`; a
        `zero_after_s` that cannot apply is an error, not a silent no-op. Only for stack
        files: a spec sent back by the API carries every field, written or not."""
        if not isinstance(data, dict) or not (info.context or {}).get(STACK_FILE):
            return data
        low = data.get("min", 1)
        if "zero_after_s" in data and isinstance(low, int) and low > 0:
            raise ValueError(
                f"zero_after_s has no effect with min {low}: only min 0 goes to zero; "
                "set min: 0, or remove zero_after_s"
            )
        high = data.get("max")
        room = isinstance(low, int) and isinstance(high, int) and high > low
        written = sorted(_AUTOSCALER_ONLY & data.keys())
        if "mode" in data and data["mode"] is None and written:
            raise ValueError(
                f"{', '.join(written)} {'has' if len(written) == 1 else 'have'} no effect with "
                "mode: null (replicas change only by nuvem scale); remove "
                f"{'it' if len(written) == 1 else 'them'}, or set a mode"
            )
        # An explicit `mode: null` keeps replicas manual (stopped at zero by `nuvem scale`).
        if "mode" not in data and (low == 0 or room or written):
            return {**data, "mode": "concurrency"}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> Scaling:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max}); set min <= max")
        if self.mode == "rps" and self.target is None:
            raise ValueError(
                "mode rps needs a target: the requests per second one replica serves, "
                "e.g. target: 20"
            )
        if self.panic_window_s > self.stable_window_s:
            raise ValueError(
                f"panic_window_s ({self.panic_window_s:g}s) is longer than stable_window_s "
                f"({self.stable_window_s:g}s); the panic window is the short one"
            )
        return self


class FunctionSpec(Strict):
    """A function: a handler (or a container image), its environment, its resources and
    how it is served."""

    name: str = Field(validation_alias=AliasChoices("name", "service"))
    handler: str = Field(
        description="module:callable or path/to/file.py[:callable]; none with image"
    )
    root: str = Field(default=".", description="folder the handler is resolved from")
    source: str | None = Field(
        default=None,
        description="sha256 of the code under root (stack/code_files.py); set by the stack "
        "file loader, so a deploy of changed code rolls the replicas over",
    )
    requirements: tuple[str, ...] = Field(default=(), description="pip requirements")
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    scaling: Scaling = Field(default_factory=Scaling)
    timeout: Seconds = Field(default=30.0, description="deadline of one call, queue included")
    max_inflight: int = Field(default=4, ge=1, le=10_000, description="calls per replica")
    threads: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="threads running a sync handler in one replica; 1 runs it on the "
        "worker's event loop (fastest for CPU-bound code), more let blocking I/O overlap",
    )
    max_queue: int = Field(default=256, ge=0, description="calls waiting per function")
    max_body: Bytes | None = Field(
        default=None,
        description="largest request body, e.g. 1Mi or 512Mi; default: the gateway's "
        "NUVEM_MAX_BODY (docs/limits.md)",
    )
    idempotent: bool = Field(default=False, description="safe to retry on another replica")
    labels: dict[str, str] = Field(default_factory=dict)
    placement: Placement = Field(default_factory=Placement, description="where replicas run")
    model: ModelSpec | None = Field(default=None, description="serve a model (docs/models.md)")
    batching: Batching | None = Field(default=None, description="group calls into batches")
    jobs: AsyncJobs = Field(default_factory=AsyncJobs, description="how async jobs run")
    image: str | None = Field(
        default=None,
        description="a container image whose process serves HTTP, e.g. localhost/resize:1.4.0; "
        "each replica is one container (docs/containers.md)",
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description=f"where the image listens inside its container (default {DEFAULT_PORT})",
    )
    health: str | None = Field(
        default=None,
        description="a path answering 2xx once the container is ready, e.g. /_/health; "
        "unset: ready once its port accepts connections",
    )
    build: BuildSpec | None = Field(
        default=None,
        description="build the image at deploy instead of naming one: {context, file, args} "
        "(docs/containers.md)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                f"function name {value!r} is invalid; use lowercase letters, digits and '-', "
                "starting with a letter (at most 63 characters)"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _serving(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and (data.get("image") is not None or data.get("build") is not None)
            and "handler" not in data
        ):
            data = {**data, "handler": ""}  # an image serves HTTP itself
        return serving_defaults(data)

    @field_validator("handler")
    @classmethod
    def _handler(cls, value: str) -> str:
        return value.strip()

    _image = field_validator("image")(check_image)
    _health = field_validator("health")(check_health)

    @property
    def serves_http(self) -> bool:
        """A container function: an image named, or one built from source."""
        return self.image is not None or self.build is not None

    @property
    def image_ref(self) -> str | None:
        """The image its replicas run: the one named, or the one its build makes."""
        if self.build is not None:
            return image_tag(self.name, self.build, self.labels.get(BUNDLE_VERSION_LABEL))
        return self.image

    @property
    def container_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORT

    @model_validator(mode="after")
    def _kind(self) -> FunctionSpec:
        if not self.serves_http and not self.handler:
            raise ValueError(
                "handler is empty; write module:callable, e.g. functions:echo (or serve a "
                "container image: image: localhost/name:tag, or build: {context: .})"
            )
        check_container(self)
        return self

    @field_validator("requirements", mode="before")
    @classmethod
    def _requirements(cls, value: Any) -> Any:
        if isinstance(value, str):
            # A pasted requirements.txt keeps its comments; pip drops them, and so must we,
            # or they would reach the installer and change the environment key.
            lines = (_COMMENT.sub("", line).strip() for line in value.splitlines())
            return tuple(line for line in lines if line)
        return value

    @field_validator("env", "labels", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        return text_mapping(value)

    def environment_key(self) -> str | None:
        """Identifies the virtual environment: None when the platform's own one serves."""
        if not self.requirements:
            return None
        canonical = "\n".join(sorted(r.strip() for r in self.requirements))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        """Changes whenever a replica started from the old spec would behave differently."""
        skip = {"scaling", "labels", "max_queue", "jobs", "max_body"}
        if self.placement == Placement():
            skip.add("placement")  # as before placement existed: an upgrade restarts nothing
        if not self.serves_http:
            skip.update(FIELDS)  # as before images existed: an upgrade restarts nothing
        if self.build is None:
            skip.add("build")  # as before builds existed
        if self.source is None:
            skip.add("source")  # as before code was digested, and for specs sent by the API
        data = self.model_dump(mode="json", exclude=skip)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
