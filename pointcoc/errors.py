"""The error type for bad input, and how a script reports it.

pointcoc raises :class:`InputError` when what a user gave is wrong: a command-line
argument, a dataset folder or file, a checkpoint, an image. It is a ``ValueError``, so code
that catches ``ValueError`` keeps working. The scripts report an ``InputError`` as one
line and exit with code 2; any other exception is a bug (ours or a library's) and keeps
its traceback.

It also holds :func:`renamed_arguments`, which keeps renamed keyword arguments working
as deprecated aliases. This module sits below every other one; it imports nothing from pointcoc.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["InputError", "input_error_message", "strip_ansi", "renamed_arguments"]

F = TypeVar("F", bound=Callable[..., Any])

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class InputError(ValueError):
    """What the user gave is wrong (argument, file, dataset, checkpoint); the message says what and how to fix it.

    Raised deliberately by input validation; scripts print it as one line and exit with code 2.
    """


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape codes (colours, bold) that some libraries put in their messages."""
    return _ANSI.sub("", text)


def input_error_message(err: BaseException) -> str:
    """The message of ``err`` as the user should read it.

    A DataLoader worker re-raises an exception in the main process with the worker's whole
    traceback as its message (``Caught InputError in DataLoader worker process 0. Original
    Traceback ...``); the original message is the text after the last ``<type>: `` line of it.
    """
    text = strip_ansi(str(err))
    if text.startswith("Caught ") and "Original Traceback" in text:
        cls = type(err)
        for prefix in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
            at = text.rfind("\n" + prefix)
            if at >= 0:
                text = text[at + 1 + len(prefix):]
                break
    return text.strip() or f"{type(err).__name__} with no message"


def renamed_arguments(_owner: str | None = None, **renames: str) -> Callable[[F], F]:
    """Keep old keyword names working as deprecated aliases of new ones (a ``FutureWarning`` names both).

    Example:
        >>> @renamed_arguments(heads="num_heads")
        ... def __init__(self, dim, num_heads=4): ...

    Giving the old and the new name together is a ``TypeError``. ``_owner`` names the callable in
    the messages (default: its qualified name).
    """
    def wrap(fn: F) -> F:
        owner = _owner or f"{fn.__qualname__}()"

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{owner} got both `{old}` (deprecated) and `{new}`; give `{new}`")
                    warnings.warn(f"{owner}: `{old}` is deprecated, use `{new}`", FutureWarning,
                                  stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        inner.renamed_arguments = dict(renames)  # type: ignore[attr-defined]
        return inner  # type: ignore[return-value]

    return wrap
