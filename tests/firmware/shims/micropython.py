"""`micropython` under CPython."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def const(value: Any) -> Any:
    return value


def native(f: F) -> F:
    return f


viper = native


def alloc_emergency_exception_buf(size: int) -> None:
    pass
