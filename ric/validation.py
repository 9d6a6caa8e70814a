"""API input checks: one per kind of value, each naming the field and what it allows.

API values arrive as JSON from any client (gradio_client, curl), so anything can come: text for
numbers, booleans, NaN and Infinity, nesting, lone surrogates. Nothing is coerced: a value
passes unchanged (a whole float such as 4.0 as the int 4, since JSON has one number type) or is
refused with an InputError (a ValueError, which the app shows to the caller) whose message
starts with the field's name and says what is allowed.

    >>> check_weights([1e308, 1e308], 2)
    [0.5, 0.5]
    >>> try:
    ...     check_whole(3.7, "max_new_tokens", 1, 512)
    ... except ValueError as e:
    ...     print(e)
    max_new_tokens must be a whole number in [1, 512], got 3.7
"""

from __future__ import annotations

import json
import math
import numbers
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass

from ric.image.data import subject_index
from ric.mapping import METHODS

MAX_SEED = 2**32 - 1  # numpy and torch seeds are 32-bit
# An image prompt is a caption, not a chat message: what the Image tab's box holds, and what
# SteerableImageModel.user_prompt allows.
MAX_IMAGE_PROMPT_CHARS = 200

# Short, safe echoes of what was sent: a list nested 50,000 deep must not blow up repr().
_echo = reprlib.Repr()
_echo.maxlevel, _echo.maxlist, _echo.maxstring, _echo.maxother = 2, 6, 40, 40


def show(value) -> str:
    """`value` as a short repr for an error message, with its type when that is the problem."""
    text = _echo.repr(value)
    return f"the text {text}" if isinstance(value, str) else text


class InputError(ValueError):
    """Bad API input; `field` names the argument at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field} {message}")


def check_text(value, field: str = "prompt") -> str:
    """A str of valid Unicode: JSON may carry lone surrogates ("\\ud800"), which no tokenizer
    can encode."""
    if value is None:
        raise InputError(field, "is missing: send it as text")
    if not isinstance(value, str):
        raise InputError(field, f"must be text, got {type(value).__name__} {show(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(
            field,
            f"holds an invalid character (a lone surrogate U+{ord(value[e.start]):04X} at "
            f"position {e.start}): send valid Unicode text",
        ) from None
    return value


def check_whole(value, field: str, lo: int, hi: int) -> int:
    """An int in [lo, hi]; a whole float (4.0) is that int, but not 3.7, NaN, True or "4"."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and not isinstance(value, numbers.Integral):
        ok = math.isfinite(value) and float(value).is_integer()
    if not ok or not lo <= value <= hi:
        raise InputError(field, f"must be a whole number in [{lo}, {hi}], got {show(value)}")
    return int(value)


def check_seed(value, default: int | None = None) -> int | None:
    """None (then `default`) or a whole number in [0, MAX_SEED]."""
    if value is None:
        return default
    return check_whole(value, "seed", 0, MAX_SEED)


def check_method(value) -> str | None:
    """A mapping method name, or None / "" for the model's own."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value not in METHODS:
        raise InputError(
            "method",
            f"must be one of {', '.join(METHODS)} (or empty for the model's own): unknown "
            f"mapping method {show(value)}",
        )
    return value


def check_weights(value, n: int) -> list[float]:
    """`n` finite numbers >= 0, not all zero, as a list (or a JSON list in a string, what a
    textbox or curl sends), renormalized to sum 1."""
    allowed = f"must be a list of {n} numbers >= 0 (one per reward), not all zero"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise InputError("weights", f"{allowed}, as a JSON list like [0.3, 0.7]") from None
    if not isinstance(value, list | tuple):
        raise InputError("weights", f"{allowed}, got {show(value)}")
    if len(value) != n:
        raise InputError("weights", f"{allowed}: expected {n} weights, got {show(value)}")
    floats = []
    for i, w in enumerate(value):
        if not isinstance(w, numbers.Real) or isinstance(w, bool):
            raise InputError("weights", f"{allowed}: weights[{i}] is {show(w)}")
        try:
            f = float(w)
        except OverflowError:  # an int beyond any float, 10**400
            f = math.inf
        if not math.isfinite(f):
            raise InputError("weights", f"{allowed}, finite: weights[{i}] is {show(w)}")
        if f < 0:
            raise InputError("weights", f"{allowed} (non-negative): weights[{i}] is {w}")
        floats.append(f)
    top = max(floats)
    if top == 0:
        raise InputError("weights", f"{allowed}: they are all zero")
    # Divide by the largest first: summing [1e308, 1e308] directly overflows to inf.
    scaled = [f / top for f in floats]
    total = sum(scaled)
    return [w / total for w in scaled]


def check_image_prompt(
    value, subjects: Sequence[str] = (), max_chars: int = MAX_IMAGE_PROMPT_CHARS
) -> str:
    """An image prompt, stripped: text of at most `max_chars`; None or "" (the model's default:
    its first subject, or no caption). A prompted model (`subjects`) draws only its subjects,
    so a prompt must name one (by name or alias, as ric.image.data.subject_index reads it):
    any other would be drawn as a subject the caller did not ask for."""
    text = check_text("" if value is None else value, "prompt").strip()
    if len(text) > max_chars:
        raise InputError("prompt", f"must be at most {max_chars} characters, got {len(text)}")
    if text and subjects and subject_index(text, subjects) is None:
        raise InputError(
            "prompt",
            f"must name one of this model's subjects ({', '.join(subjects)}) or be empty: "
            f"{show(text)} names none of them",
        )
    return text


def check_arguments(params: Sequence[str], args: Sequence) -> None:
    """All of `params` given: a raw HTTP call may send fewer values than the endpoint takes."""
    if len(args) < len(params):
        missing = ", ".join(params[len(args) :])
        raise InputError(
            missing,
            f"{'is' if len(params) - len(args) == 1 else 'are'} missing: this endpoint takes "
            f"{len(params)} values ({', '.join(params)}), got {len(args)}",
        )


@dataclass(frozen=True)
class Limits:
    """What a loaded app allows: one weight per reward, its max reply and image counts, and
    the subjects an image prompt may name (none: any caption)."""

    n_rewards: int
    max_new_tokens: int = 4096
    max_images: int = 8
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    weights: list[float]
    method: str | None
    max_new_tokens: int
    seed: int | None


@dataclass(frozen=True)
class MapRequest:
    weights: list[float]
    method: str | None


@dataclass(frozen=True)
class ImageRequest:
    weights: list[float]
    method: str | None
    n: int
    seed: int
    prompt: str


def generate_request(
    prompt, weights, method, max_new_tokens, seed, limits: Limits
) -> GenerateRequest:
    """/generate (prompt, weights, method, max_new_tokens, seed)."""
    return GenerateRequest(
        check_text(prompt, "prompt"),
        check_weights(weights, limits.n_rewards),
        check_method(method),
        check_whole(max_new_tokens, "max_new_tokens", 1, limits.max_new_tokens),
        check_seed(seed),
    )


def map_request(weights, method, limits: Limits) -> MapRequest:
    """/map_preferences (weights, method)."""
    return MapRequest(check_weights(weights, limits.n_rewards), check_method(method))


def image_request(weights, method, n, seed, prompt, limits: Limits) -> ImageRequest:
    """/generate_image (weights, method, n, seed, prompt); no seed means seed 0, an empty
    prompt the model's default."""
    return ImageRequest(
        check_weights(weights, limits.n_rewards),
        check_method(method),
        check_whole(n, "n (number of images)", 1, limits.max_images),
        check_seed(seed, default=0),
        check_image_prompt(prompt, limits.subjects),
    )


# Endpoint -> (its parameters in order, its check): what the app serves (ric/app/text.py,
# ric/app/image.py), for check_call and ApiBlocks.
ENDPOINTS = {
    "generate": (("prompt", "weights", "method", "max_new_tokens", "seed"), generate_request),
    "map_preferences": (("weights", "method"), map_request),
    "generate_image": (("weights", "method", "n", "seed", "prompt"), image_request),
}


def check_call(
    endpoint: str, args: Sequence, limits: Limits
) -> GenerateRequest | MapRequest | ImageRequest:
    """The request an endpoint gets from positional `args`, or InputError."""
    params, check = ENDPOINTS[endpoint]
    check_arguments(params, args)
    return check(*args[: len(params)], limits)
