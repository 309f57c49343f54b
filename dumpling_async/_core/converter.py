"""The one cattrs converter of the library (never cattrs' global one).

JSON keys are camelCase, fields snake_case; unknown keys are ignored but kept in ``raw``;
scalars are coerced only where the coercion cannot lose meaning (``"12"`` -> ``12``,
``"true"`` -> ``True``). A 200 is paid for, so the vendor's type drift never costs the
answer: a documented field of an unexpected type (``"followerCount": "1.2M"``) becomes its
default (``None``, or an empty tuple) with a debug log, and the model is returned with
``raw`` intact. Only a body that is not a JSON object (or a profile without its ``user``
object) is an :class:`InvalidResponseError`.
"""

from __future__ import annotations

import linecache
import types
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import orjson
from cattrs.gen import make_dict_structure_fn, override
from cattrs.preconf.orjson import OrjsonConverter, make_converter

from .._errors import InvalidResponseError
from .._models import (
    BioLink,
    CommentUser,
    CommerceUserInfo,
    ProfileTab,
    ProfileVideo,
    TikTokMusic,
    TikTokProfile,
    TikTokStats,
    TikTokTranscript,
    TikTokUser,
    TikTokUserSummary,
    TikTokVideo,
    VideoAuthor,
    VideoComment,
    VideoStatistics,
    VideoStats,
)
from .log import get_logger

__all__ = ["parse_model", "parse_object", "parse_profile", "structure", "structure_profile"]

T = TypeVar("T")

# Keys whose camelCase spelling is not the mechanical one.
_SPECIAL = {"is_ad_virtual": "isADVirtual", "create_time_iso": "createTimeISO"}
_CAMEL_CASE: tuple[type[Any], ...] = (
    BioLink,
    CommerceUserInfo,
    ProfileTab,
    TikTokUser,
    TikTokStats,
    TikTokProfile,
    VideoStats,
    TikTokMusic,
    TikTokVideo,
    TikTokUserSummary,
    TikTokTranscript,
)
# The endpoints that pass TikTok's mobile API through keep its snake_case keys.
_SNAKE_CASE: tuple[type[Any], ...] = (
    VideoStatistics,
    VideoAuthor,
    ProfileVideo,
    CommentUser,
    VideoComment,
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _as_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # ids sometimes arrive as numbers
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _as_int(value: Any, _: type) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 40:
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


_BOOL_TEXT = {"true": True, "false": False}


def _as_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    raise TypeError(f"expected a boolean, got {type(value).__name__}")


def _as_object(value: Any, _: type) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise TypeError(f"expected an object, got {type(value).__name__}")


def _object_list(value: Any, _: type) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    if not all(isinstance(item, dict) for item in value):
        raise TypeError("expected a list of objects")
    return tuple(value)


def _any_list(value: Any, _: type) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return tuple(value)


def _model_tuple(converter: OrjsonConverter) -> Any:
    # tuple[Model, ...]: a missing or null list is empty (the API sends null for "none").
    def factory(t: Any) -> Any:
        (item,) = t.__args__[:1]

        def structure(value: Any, _: type) -> tuple[Any, ...]:
            return _models(value, converter.get_structure_hook(item), item)

        return structure

    return factory


def _is_model_tuple(t: Any) -> bool:
    args: tuple[Any, ...] = getattr(t, "__args__", ())
    return (
        getattr(t, "__origin__", None) is tuple
        and len(args) == 2
        and args[1] is Ellipsis
        and attrs.has(args[0])
    )


def _is(expected: Any) -> Any:
    def predicate(t: Any) -> bool:
        return bool(t == expected)

    return predicate


def _optional(check: Any) -> Any:
    # One hook per optional scalar: None and the exact type pass straight through (the
    # common case), anything else goes to the coercing check. Faster than cattrs' union.
    exact = {_as_str: str, _as_int: int, _as_bool: bool}[check]

    def structure(value: Any, _: type) -> Any:
        if value is None or value.__class__ is exact:
            return value
        return check(value, exact)

    return structure


Hook = Callable[[Any, Any], Any]
_SCALARS = {str | None: (str, _as_str), int | None: (int, _as_int), bool | None: (bool, _as_bool)}
_LISTS = {tuple[Any, ...]: _any_list, tuple[dict[str, Any], ...]: _object_list}


def _optional_model(kind: Any) -> Any:
    """``Model`` for ``Model | None``, else None."""
    args: tuple[Any, ...] = getattr(kind, "__args__", ())
    if isinstance(kind, types.UnionType) and len(args) == 2 and args[1] is type(None):
        return args[0] if attrs.has(args[0]) else None
    return None


def _field_lines(i: int, key: str, kind: Any, env: dict[str, Any]) -> list[str] | None:
    """Lines that put the value of *key* into ``v{i}`` as the hooks of ``_make_converter``
    would, or None for a type with no inline form. An absent key reads as None, which
    each of these types turns into its field's default."""
    v = f"v{i}"
    lines = [f"{v} = get({key!r})"]
    if kind in _SCALARS:
        env[f"t{i}"], env[f"c{i}"] = _SCALARS[kind]
        lines.append(f"if {v} is not None and {v}.__class__ is not t{i}: {v} = c{i}({v}, t{i})")
    elif (model := _optional_model(kind)) is not None:
        env[f"m{i}"] = model
        lines.append(f"if {v} is not None: {v} = hooks[m{i}]({v}, m{i})")
    elif kind in _LISTS:
        env[f"c{i}"] = _LISTS[kind]
        lines.append(f"{v} = c{i}({v}, None)")
    elif _is_model_tuple(kind):
        env[f"m{i}"] = kind.__args__[0]
        lines.append(f"{v} = models({v}, hooks[m{i}], m{i})")
    elif kind == dict[str, Any] | None:
        lines.append(f"if {v} is not None: {v} = as_object({v}, None)")
    else:
        return None
    return lines


def _models(value: Any, hook: Hook, model: type[Any]) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return tuple([hook(item, model) for item in value])


def _compile(cls: type[Any], fields: list[tuple[str, str, Any]], hooks: dict[Any, Hook]) -> Any:
    """One function building *cls* from a JSON object with every field's check inline:
    what cattrs' generated code does through a hook call per field, at a fraction of the
    cost. None when a field's type has no inline form (cattrs then builds it)."""
    env: dict[str, Any] = {"cls": cls, "hooks": hooks, "models": _models, "as_object": _as_object}
    body = ["    get = o.get"]
    for i, (_, key, kind) in enumerate(fields):
        lines = _field_lines(i, key, kind, env)
        if lines is None:
            return None
        body += [f"    {line}" for line in lines]
    source = "\n".join(["def build(o, _):", *body, *_make_lines(cls, fields, env), ""])
    filename = f"<dumpling_async generated structure {cls.__module__}.{cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), env)  # the source is made above, from types
    return env["build"]


def _make_lines(
    cls: type[Any], fields: list[tuple[str, str, Any]], env: dict[str, Any]
) -> list[str]:
    """The lines that make the instance from ``v0``, ``v1``... and ``o`` (its ``raw``):
    its slots set one by one, as attrs' ``__init__`` does but without its call and
    keyword matching, when that ``__init__`` does nothing else; else a call to it."""
    names = [name for name, _, _ in fields] + ["raw"]
    slots = [getattr(cls, name, None) for name in names]
    every_slot = {slot for base in cls.__mro__ for slot in getattr(base, "__slots__", ())}
    plain = (
        not hasattr(cls, "__attrs_pre_init__")
        and not hasattr(cls, "__attrs_post_init__")
        and [a.name for a in attrs.fields(cls)] == names  # no field is left to its default
        and all(a.validator is None and a.converter is None for a in attrs.fields(cls))
        and all(type(slot) is types.MemberDescriptorType for slot in slots)
        and every_slot <= {*names, "__weakref__"}  # no hidden slot (a cached hash) to fill
    )
    if not plain:
        args = "".join(f"{name}=v{i}, " for i, name in enumerate(names[:-1]))
        return [f"    return cls({args}raw=o)"]
    env["new"] = object.__new__
    lines = ["    self = new(cls)"]
    for i, slot in enumerate(slots):
        env[f"s{i}"] = slot.__set__  # type: ignore[union-attr]
        lines.append(f"    s{i}(self, v{i})" if i < len(fields) else f"    s{i}(self, o)")
    return [*lines, "    return self"]


def _generic(converter: OrjsonConverter, cls: type[Any], overrides: dict[str, Any]) -> Hook:
    """cattrs' own structure function for *cls*, and ``raw``."""
    generic = make_dict_structure_fn(cls, converter, **overrides)

    def build(value: Any, cl: type[Any]) -> Any:
        instance = generic(value, cl)
        # Frozen classes allow this one write; it keeps the source object reachable.
        object.__setattr__(instance, "raw", value)
        return instance

    return build


def _model_fields(
    cls: type[Any], *, camel: bool
) -> tuple[list[tuple[str, str, Any]], dict[str, Any]]:
    """The (attribute, JSON key, type) of each field read from JSON, and cattrs'
    overrides for the same (renames, omitted fields)."""
    attrs.resolve_types(cls)
    overrides: dict[str, Any] = {}
    fields: list[tuple[str, str, Any]] = []
    for a in attrs.fields(cls):
        if a.name == "raw" or a.metadata.get("computed"):
            overrides[a.name] = override(omit=True)
            continue
        key = _SPECIAL.get(a.name, _camel(a.name)) if camel else a.name
        if camel:
            overrides[a.name] = override(rename=key)
        fields.append((a.name, key, a.type))
    return fields, overrides


def _register_model(
    converter: OrjsonConverter, hooks: dict[Any, Hook], cls: type[Any], *, camel: bool = True
) -> None:
    fields, overrides = _model_fields(cls, camel=camel)
    build = _compile(cls, fields, hooks) or _generic(converter, cls, overrides)

    def structure(value: Any, cl: type[Any]) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object for {cl.__name__}, got {type(value).__name__}")
        try:
            return build(value, cl)
        except Exception:
            instance = _lenient(converter, cl, value, fields)
        object.__setattr__(instance, "raw", value)
        return instance

    hooks[cls] = structure
    converter.register_structure_hook(cls, structure)


def _lenient(
    converter: OrjsonConverter, cls: type[Any], value: dict[str, Any], fields: list[Any]
) -> Any:
    """Structure field by field, leaving at its default each field whose value has a type
    it cannot take (the slow path, taken only when the fast one failed)."""
    kwargs: dict[str, Any] = {}
    dropped: list[str] = []
    for name, key, kind in fields:
        if key not in value:
            continue
        try:
            kwargs[name] = converter.structure(value[key], kind)
        except Exception:
            dropped.append(f"{key}: {type(value[key]).__name__}")
    get_logger().debug("response_fields_dropped", model=cls.__name__, fields=dropped)
    return cls(**kwargs)


def _make_converter(hooks: dict[Any, Hook]) -> OrjsonConverter:
    """The converter; *hooks* receives each model's structure function."""
    converter = make_converter(detailed_validation=False, forbid_extra_keys=False)
    converter.register_structure_hook(str, _as_str)
    converter.register_structure_hook(int, _as_int)
    converter.register_structure_hook(bool, _as_bool)
    for check, optional in ((_as_str, str | None), (_as_int, int | None), (_as_bool, bool | None)):
        converter.register_structure_hook_func(_is(optional), _optional(check))
    # Generic aliases cannot go through singledispatch; match them by identity.
    converter.register_structure_hook_func(lambda t: t == dict[str, Any], _as_object)
    converter.register_structure_hook_func(lambda t: t == tuple[dict[str, Any], ...], _object_list)
    converter.register_structure_hook_func(lambda t: t == tuple[Any, ...], _any_list)
    converter.register_structure_hook_factory(_is_model_tuple, _model_tuple(converter))
    for cls in _CAMEL_CASE:
        _register_model(converter, hooks, cls)
    for cls in _SNAKE_CASE:
        _register_model(converter, hooks, cls, camel=False)
    return converter


class _Structurer:
    """Builds the converter on first use: importing the package does no work."""

    __slots__ = ("_converter", "_hooks")

    def __init__(self) -> None:
        self._converter: OrjsonConverter | None = None
        self._hooks: dict[Any, Hook] = {}  # a model's own hook, without cattrs' dispatch

    def __call__(self, data: Any, cls: type[T]) -> T:
        hook = self._hooks.get(cls)
        if hook is not None:
            instance: T = hook(data, cls)
            return instance
        converter = self._converter
        if converter is None:
            converter = self._converter = _make_converter(self._hooks)
        return converter.structure(data, cls)


_structure = _Structurer()


def structure(data: Any, cls: type[T]) -> T:
    """Structure a decoded JSON object into *cls* or raise InvalidResponseError."""
    if not isinstance(data, dict):
        raise _not_an_object(data)
    try:
        return _structure(data, cls)
    except Exception as exc:  # cattrs wraps failures in its own exception types
        detail = str(exc) if isinstance(exc, TypeError | ValueError | KeyError) else ""
        raise InvalidResponseError(
            f"response is not a {cls.__name__}: {detail or type(exc).__name__}", status=200
        ) from None


def structure_profile(data: Any) -> TikTokProfile:
    """Structure a decoded JSON value into a profile or raise InvalidResponseError."""
    return structure(data, TikTokProfile)


def parse_object(body: bytes) -> dict[str, Any]:
    """Decode a 200 body that must be a JSON object."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidResponseError(f"response body is not JSON ({exc.msg})", status=200) from None
    if not isinstance(data, dict):
        raise _not_an_object(data)
    return data


def _not_an_object(data: Any) -> InvalidResponseError:
    return InvalidResponseError(f"expected a JSON object, got {type(data).__name__}", status=200)


def parse_model(cls: type[T], body: bytes, *, requires: str | None = None) -> T:
    """Decode a 200 body and structure it into *cls*, or raise InvalidResponseError (also
    when the object named *requires* is missing: then the body is not that model). The
    error names no request: the pipeline names it."""
    data = parse_object(body)
    if requires is not None and not isinstance(data.get(requires), dict):
        raise InvalidResponseError(
            f"response is not a {cls.__name__}: no {requires!r} object", status=200
        )
    return structure(data, cls)


def parse_profile(body: bytes) -> TikTokProfile:
    """Decode and structure a 200 body of ``get-tiktok-profile``."""
    return parse_model(TikTokProfile, body, requires="user")
