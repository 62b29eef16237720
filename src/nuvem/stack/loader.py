"""Reads a stack file into a `Stack`; every error names the file, the line and the fix."""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from nuvem.errors import SpecError
from nuvem.stack.build_context import source_digest
from nuvem.stack.code_files import code_digest
from nuvem.stack.function import STACK_FILE, FunctionSpec
from nuvem.stack.stack import Stack

__all__ = ["load_stack", "load_stack_text"]

Loc = tuple[int | str, ...]

# Aliases let a short file stand for an exponentially large value (the "billion laughs");
# validating that would hang the gateway, so a file may hold at most this many values.
MAX_VALUES = 50_000

# Fields the stack file implies rather than states: a function's name is its key.
# Fields the loader sets: never written in a stack file, so never offered as a fix.
_IMPLIED: dict[type[BaseModel], frozenset[str]] = {FunctionSpec: frozenset({"name", "source"})}

_MERGE_TAG = "tag:yaml.org,2002:merge"

_YAML_HINTS = (
    ("mapping values are not allowed", "quote a value that contains ': ', or fix the indentation"),
    ("cannot start any token", "indent with spaces; YAML does not allow tabs"),
    ("could not find expected ':'", "write each field as `key: value`"),
    ("expected <block end>", "indent this line like the other keys at its level"),
    ("undefined alias", "define the anchor (&name) before using it (*name)"),
    ("could not determine a constructor", "remove the tag; a stack file is plain YAML"),
    ("expected a single document", "remove the `---` that starts a second document"),
    ("end of stream", "close the quote or bracket opened here"),
)


@dataclass(frozen=True)
class _Problem:
    line: int
    path: str
    message: str

    def render(self, name: str) -> str:
        return f"{name}:{self.line}: {self.path}: {self.message}"


class _TooLargeError(Exception):
    pass


@dataclass(frozen=True)
class _Spot:
    """Where a value sits in the file; lines count from 1."""

    key_line: int  # the key's line, or the item's own line in a list
    value_line: int
    is_collection: bool


def load_stack(path: Path) -> Stack:
    """Read, validate and resolve the stack file at `path`."""
    if path.is_dir():
        raise SpecError(
            f"{path} is a folder, not a stack file",
            hint=f"pass the file itself, e.g. -f {path / 'nuvem.yaml'}",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            f"no stack file at {path}",
            hint="run `nuvem init` to create one, or point to another with -f PATH",
        ) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            hint="save the file as UTF-8",
        ) from None
    except OSError as exc:
        raise SpecError(f"cannot read stack file {path}: {exc.strerror}") from None
    return _digest_code(load_stack_text(text, str(path), path.parent), str(path))


def load_stack_text(text: str, name: str, root: Path) -> Stack:
    """Validate stack file text; `name` labels errors, `root` is the folder it lives in."""
    data, spots = _parse(text, name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(
            f"{name}:{spots[()].value_line}: the stack file must be a mapping of `key: value` "
            f"lines with `functions:` at the top, not {_show(data)}"
        )
    functions = data.get("functions")
    if "functions" in data and functions is None:
        # A bare `functions:` is what is left after removing the last function.
        data = {key: value for key, value in data.items() if key != "functions"}
    elif isinstance(functions, dict):
        # YAML reads `1:` or `no:` as a number or a bool; as text, the name check explains
        # which names are allowed instead of failing twice on the type.
        data = {**data, "functions": {str(key): body for key, body in functions.items()}}
    try:
        stack = Stack.model_validate(data, context={STACK_FILE: True})
    except ValidationError as exc:
        raise SpecError(_report(name, [_problem(e, spots) for e in exc.errors()])) from None
    stack = _resolve_roots(stack, root)
    stack = _resolve_builds(stack, name, spots)
    _check_model_files(stack, name, spots)
    _check_pool_modules(stack, name, spots)
    _check_token_file(stack, name, spots)
    return stack


def _resolve_roots(stack: Stack, root: Path) -> Stack:
    base = root.expanduser().resolve()
    functions = {}
    for key, spec in stack.functions.items():
        folder = (base / Path(spec.root).expanduser()).resolve()
        update: dict[str, Any] = {"root": str(folder)}
        if spec.model is not None:
            # Model files are named relative to the function's folder, like its handler.
            update["model"] = spec.model.resolved(folder)
        functions[key] = spec.model_copy(update=update)
    update_stack: dict[str, Any] = {"functions": functions}
    if stack.cluster.token_file:
        # Like a handler's folder, the token file is named relative to the stack file.
        token = (base / Path(stack.cluster.token_file).expanduser()).resolve()
        update_stack["cluster"] = stack.cluster.model_copy(update={"token_file": str(token)})
    influx = stack.metrics.influxdb
    if influx is not None and influx.token_file:
        token = (base / Path(influx.token_file).expanduser()).resolve()
        influx = influx.model_copy(update={"token_file": str(token)})
        update_stack["metrics"] = stack.metrics.model_copy(update={"influxdb": influx})
    pools = {}
    for key, pool in stack.pools.items():
        if not pool.built_in:
            # Like a handler's folder, a module of one's own is named relative to the file.
            module = (base / Path(pool.module).expanduser()).resolve()
            pool = pool.model_copy(update={"module": str(module)})
        pools[key] = pool
    update_stack["pools"] = pools
    return stack.model_copy(update=update_stack)


def _resolve_builds(stack: Stack, name: str, spots: dict[Loc, _Spot]) -> Stack:
    """A build's context is named relative to its function's folder, like the handler; it
    and its Containerfile must exist now, and what they hold is hashed into `source`."""
    problems = []
    functions = dict(stack.functions)
    for key, spec in stack.functions.items():
        if spec.build is None:
            continue
        context = (Path(spec.root) / Path(spec.build.context).expanduser()).resolve()
        containerfile = context / spec.build.file
        field, problem = "", ""
        if not context.is_dir():
            field, problem = "context", f"no folder at {context}; write the build context's path"
        elif not containerfile.is_file():
            field, problem = (
                "file",
                (
                    f"no Containerfile at {containerfile}; write one there, or set file: to "
                    "its path inside the context"
                ),
            )
        if problem:
            loc: Loc = ("functions", key, "build", field)
            problem += " (relative to the function's folder)" if field == "context" else ""
            problems.append(_Problem(_line_for(loc, "value_error", spots), _dotted(loc), problem))
            continue
        try:
            source = source_digest(context, spec.build.file, spec.build.args)
        except OSError as exc:
            where: Loc = ("functions", key, "build", "context")
            problems.append(
                _Problem(
                    _line_for(where, "value_error", spots),
                    _dotted(where),
                    f"cannot read the build context {context}: {exc}; make its files readable",
                )
            )
            continue
        build = spec.build.model_copy(update={"context": str(context), "source": source})
        functions[key] = spec.model_copy(update={"build": build})
    if problems:
        raise SpecError(_report(name, problems))
    return stack.model_copy(update={"functions": functions})


def _digest_code(stack: Stack, name: str) -> Stack:
    """Each handler function's `source`: the digest of its folder's code, so `nuvem deploy`
    of edited code is a change although the stack entry reads the same. Only for a stack
    file on disk: text loaded with a notional folder has no code to read."""
    functions = dict(stack.functions)
    digests: dict[str, str | None] = {}  # functions sharing a folder (the usual) read it once
    for key, spec in stack.functions.items():
        if spec.serves_http or not Path(spec.root).is_dir():
            continue  # an image's code is its image; a missing folder is the worker's error
        if spec.root not in digests:
            try:
                digests[spec.root] = code_digest(Path(spec.root))
            except OSError as exc:
                raise SpecError(
                    f"{name}: functions.{key}.root: cannot read the function's folder "
                    f"{spec.root}: {exc}",
                    hint="make its files readable, or set root to the handler's own folder",
                ) from None
        functions[key] = spec.model_copy(update={"source": digests[spec.root]})
    return stack.model_copy(update={"functions": functions})


def _check_pool_modules(stack: Stack, name: str, spots: dict[Loc, _Spot]) -> None:
    """A module of one's own must be a folder of .tf files, found now rather than at the
    first scale-up."""
    problems = []
    for key, pool in stack.pools.items():
        if pool.built_in:
            continue
        folder = Path(pool.module)
        if folder.is_dir() and any(folder.glob("*.tf")):
            continue
        loc: Loc = ("pools", key, "module")
        problems.append(
            _Problem(
                _line_for(loc, "value_error", spots),
                _dotted(loc),
                f"no Terraform module at {folder} (a folder of .tf files); write one of "
                "local, proxmox, aws, or the path of your module relative to the stack file",
            )
        )
    if problems:
        raise SpecError(_report(name, problems))


def _check_token_file(stack: Stack, name: str, spots: dict[Loc, _Spot]) -> None:
    influx = stack.metrics.influxdb
    if influx is None or not influx.token_file or os.access(influx.token_file, os.R_OK):
        return
    loc: Loc = ("metrics", "influxdb", "token_file")
    problem = _Problem(
        _line_for(loc, "value_error", spots),
        _dotted(loc),
        f"no readable file at {influx.token_file}; write the InfluxDB token into it, or "
        "set NUVEM_INFLUXDB_TOKEN instead",
    )
    raise SpecError(_report(name, [problem]))


def _check_model_files(stack: Stack, name: str, spots: dict[Loc, _Spot]) -> None:
    """A model whose file is missing fails here, at deploy time, not in a replica later."""
    problems = []
    served: dict[tuple[str, str], str] = {}
    for key, spec in stack.functions.items():
        if spec.model is not None:
            version = (spec.model.name or key, spec.model.version)
            if version in served:
                where: Loc = ("functions", key, "model")
                problems.append(
                    _Problem(
                        _line_for(where, "value_error", spots),
                        _dotted(where),
                        f"model {version[0]!r} version {version[1]!r} is also served by "
                        f"function {served[version]!r}; give each function its own version",
                    )
                )
            served.setdefault(version, key)
        missing = spec.model.missing_file() if spec.model is not None else None
        if missing is None:
            continue
        field, path = missing
        loc: Loc = ("functions", key, "model", field)
        problems.append(
            _Problem(
                _line_for(loc, "value_error", spots),
                _dotted(loc),
                f"file not found or not readable: {path}; check the path (it is relative to "
                "the stack file's folder) or give an https URL for the weights",
            )
        )
    if problems:
        raise SpecError(_report(name, problems))


def _parse(text: str, name: str) -> tuple[Any, dict[Loc, _Spot]]:
    try:  # the reader refuses control characters as soon as it is made
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: invalid YAML: {exc}", "remove control characters") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {(): _Spot(1, 1, False)}
        duplicates = list(_duplicate_keys(node, (), set()))
        if duplicates:
            raise SpecError(_report(name, duplicates))
        # Construction flattens `<<` merges into the node tree, so index after it.
        data = loader.construct_document(node)
        spots: dict[Loc, _Spot] = {}
        _index(loader, node, (), None, spots, set())
    except yaml.MarkedYAMLError as exc:
        raise SpecError(_yaml_problem(name, exc)) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: invalid YAML: {exc}") from None
    except RecursionError:
        raise SpecError(f"{name}: the file is nested too deeply to be a stack file") from None
    except _TooLargeError:
        raise SpecError(
            f"{name}: the file expands to more than {MAX_VALUES} values",
            hint="aliases (*name) probably repeat a large value; write it out once",
        ) from None
    finally:
        loader.dispose()
    return data, spots


def _duplicate_keys(
    node: yaml.Node, path: tuple[str, ...], visited: set[int]
) -> Iterator[_Problem]:
    """PyYAML lets a repeated key silently replace the first; in a stack file that loses a
    function, so repeats are errors. Keys that `<<` merges in may be overridden, as YAML says."""
    # An alias shares its node: checking it once keeps this linear and ends self-references.
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                continue
            first = seen.get((key.tag, key.value))
            if first is None:
                seen[(key.tag, key.value)] = _line(key)
            else:
                yield _Problem(
                    _line(key),
                    ".".join((*path, key.value)),
                    f"{key.value!r} is already defined on line {first}; "
                    "rename or remove one of them",
                )
            yield from _duplicate_keys(value, (*path, key.value), visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, f"[{index}]"), visited)


def _index(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    loc: Loc,
    key: yaml.Node | None,
    spots: dict[Loc, _Spot],
    ancestors: set[int],
) -> None:
    """Record the lines of every value, keyed by the path pydantic will report."""
    if len(spots) >= MAX_VALUES:
        raise _TooLargeError
    is_collection = isinstance(node, yaml.MappingNode | yaml.SequenceNode)
    spots[loc] = _Spot(_line(key or node), _line(node), is_collection)
    if id(node) in ancestors:  # an alias to its own ancestor: the value contains itself
        return
    ancestors = ancestors | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key_value = loader.construct_object(key_node)
            if isinstance(key_value, int | str):
                _index(loader, value_node, (*loc, key_value), key_node, spots, ancestors)
            if not isinstance(key_value, str):
                # Function keys reach the model as text (see load_stack_text). A key that is
                # neither text nor a number (null, 1.5) has only that text to be found by.
                as_text = (*loc, str(key_value))
                if (*loc, key_value) in spots:
                    spots.setdefault(as_text, spots[(*loc, key_value)])
                else:
                    _index(loader, value_node, as_text, key_node, spots, ancestors)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(loader, item, (*loc, index), None, spots, ancestors)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1 if node.start_mark else 1


def _yaml_problem(name: str, exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or str(exc)
    mark = exc.problem_mark
    if "end of stream" in problem and exc.context_mark is not None:
        # The end of the file is not where the mistake is; where the quote opened is.
        mark = exc.context_mark
    where = f"{name}:{mark.line + 1}" if mark is not None else name
    context = f" ({exc.context})" if exc.context and exc.context_mark is not mark else ""
    hint = next(
        (fix for clue, fix in _YAML_HINTS if clue in f"{problem} {exc.context or ''}"),
        "check the indentation and quoting on this line and the one above",
    )
    return f"{where}: invalid YAML: {problem}{context}; {hint}"


def _report(name: str, problems: Sequence[_Problem]) -> str:
    lines = [p.render(name) for p in sorted(problems, key=lambda p: p.line)]
    if len(lines) == 1:
        return lines[0]
    return f"{name} has {len(lines)} problems:\n" + "\n".join(f"  {line}" for line in lines)


def _problem(error: ErrorDetails, spots: dict[Loc, _Spot]) -> _Problem:
    loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
    return _Problem(_line_for(loc, error["type"], spots), _dotted(loc), _describe(error))


def _line_for(loc: Loc, kind: str, spots: dict[Loc, _Spot]) -> int:
    for end in range(len(loc), -1, -1):
        spot = spots.get(loc[:end])
        if spot is None:
            continue
        exact = end == len(loc)
        if exact and not spot.is_collection and kind != "extra_forbidden":
            return spot.value_line
        return spot.key_line
    return 1


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    value = error.get("input")
    loc = error["loc"]
    got = f"got {_show(value)}"
    if kind == "extra_forbidden":
        return _unknown_field(loc)
    if kind == "missing":
        return _missing_field(loc)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        if value is None:
            return "is empty; give it `key: value` lines, indented below it"
        return f"expected a mapping of `key: value` lines, {got}"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, e.g. [a, b], {got}"
    if kind == "string_type":
        return f"expected text, {got}; put it in quotes"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, {got}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            # Our own validators already quote the value and say how to fix it.
            return message.removeprefix(prefix)
    return f"{message[:1].lower()}{message[1:]}, {got}"


def _unknown_field(loc: Sequence[int | str]) -> str:
    field = str(loc[-1])
    valid = _fields_at(tuple(loc[:-1]))
    close = difflib.get_close_matches(field, valid, n=1)
    if close:
        return f"unknown field {field!r}; did you mean {close[0]!r}?"
    if valid:
        return f"unknown field {field!r}; valid fields are {', '.join(valid)}"
    return f"unknown field {field!r}"


def _missing_field(loc: Sequence[int | str]) -> str:
    field = str(loc[-1])
    model = _model_at(tuple(loc[:-1]))
    info = model.model_fields.get(field) if model else None
    example = f" ({info.description})" if info and info.description else ""
    return f"required field {field!r} is missing; add `{field}:`{example}"


def _fields_at(loc: Loc) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return []
    implied = _IMPLIED.get(model, frozenset())
    return [field for field in model.model_fields if field not in implied]


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model that validates the value at `loc`, found by following the annotations."""
    current: Any = Stack
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) in (tuple, list):
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X, so optional nested models are still found."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."
