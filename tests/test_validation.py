"""API input checks against a corpus of bad inputs (tests/data/bad_api_inputs.json), no model.

Each corpus entry is an endpoint, its positional arguments as JSON (NaN and Infinity included)
and the field the message must name. {"$nest": k} stands for a list nested k deep and
{"$json_nest": k} for the same as JSON text: 50,000 levels would make an unreadable file.
"""

import json
import math
from pathlib import Path

import pytest

from ric.validation import (
    MAX_SEED,
    InputError,
    Limits,
    check_call,
    check_image_prompt,
    check_seed,
    check_text,
    check_weights,
    check_whole,
)

CORPUS = json.loads((Path(__file__).parent / "data" / "bad_api_inputs.json").read_text())
# A prompted image model's subjects: the corpus's "a dog" names none of them.
LIMITS = Limits(n_rewards=2, max_new_tokens=512, max_images=8, subjects=("cat", "moon"))


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def expand(value):
    if isinstance(value, dict) and "$nest" in value:
        return nested(value["$nest"])
    if isinstance(value, dict) and "$json_nest" in value:
        return "[" * value["$json_nest"] + "]" * value["$json_nest"]
    return value


def test_corpus_covers_every_endpoint_and_field():
    assert len(CORPUS) >= 92
    fields = {(row["endpoint"], row["field"]) for row in CORPUS}
    assert fields >= {
        ("generate", f) for f in ("prompt", "weights", "method", "max_new_tokens", "seed")
    }
    assert fields >= {("generate_image", f) for f in ("weights", "method", "n", "seed", "prompt")}
    assert fields >= {("map_preferences", f) for f in ("weights", "method")}


@pytest.mark.parametrize(
    "row", CORPUS, ids=[f"{r['endpoint']}-{r['field']}-{r['why']}" for r in CORPUS]
)
def test_bad_input_names_its_field(row):
    args = [expand(a) for a in row["args"]]
    with pytest.raises(InputError) as err:
        check_call(row["endpoint"], args, LIMITS)
    message = str(err.value)
    assert message.startswith(row["field"]) and err.value.field.startswith(row["field"])
    assert any(word in message for word in ("must", "missing", "invalid character"))
    assert len(message) < 300  # echoes of the input are cut short


def test_good_input_passes_unchanged():
    req = check_call("generate", ["hi", [1, 3], "l2", 64.0, MAX_SEED], LIMITS)
    assert (req.prompt, req.weights, req.method) == ("hi", [0.25, 0.75], "l2")
    assert req.max_new_tokens == 64 and isinstance(req.max_new_tokens, int)
    assert req.seed == MAX_SEED
    req = check_call("generate", ["hi", "[0.3, 0.7]", "", 1, None], LIMITS)
    assert req.weights == pytest.approx([0.3, 0.7]) and req.method is None and req.seed is None
    req = check_call("generate_image", [(2, 2), None, 8, None, None], LIMITS)
    assert (req.weights, req.method, req.n, req.seed, req.prompt) == ([0.5, 0.5], None, 8, 0, "")
    req = check_call("generate_image", [[1, 1], "l2", 1, 0, "  a photo of a Kitten "], LIMITS)
    assert req.prompt == "a photo of a Kitten"  # stripped, else unchanged: "kitten" is the cat
    assert check_call("map_preferences", [[0, 7], "quantile"], LIMITS).weights == [0.0, 1.0]


def test_huge_and_tiny_weights_do_not_overflow():
    assert check_weights([1e308, 1e308], 2) == [0.5, 0.5]
    assert check_weights([1.7e308, 0.0], 2) == [1.0, 0.0]
    assert check_weights([5e-324, 0], 2) == [1.0, 0.0]
    assert check_weights([10**300, 3 * 10**300], 2) == pytest.approx([0.25, 0.75])
    assert math.fsum(check_weights([1e-300, 1e308], 2)) == pytest.approx(1.0)


def test_messages_say_what_is_allowed():
    with pytest.raises(InputError, match=r"max_new_tokens must be a whole number in \[1, 512\]"):
        check_whole(3.7, "max_new_tokens", 1, 512)
    with pytest.raises(InputError, match=r"seed must be a whole number in \[0, 4294967295\]"):
        check_seed(-1)
    with pytest.raises(InputError, match="got the text '4'"):
        check_whole("4", "n", 1, 8)
    with pytest.raises(InputError, match="prompt must be text, got int"):
        check_text(5)
    with pytest.raises(InputError, match="lone surrogate U\\+D800 at position 3"):
        check_text("hi \ud800")
    with pytest.raises(
        InputError, match=r"list of 2 numbers >= 0 .*weights\[0\] is the text '0.5'"
    ):
        check_weights(["0.5", "0.5"], 2)
    with pytest.raises(InputError, match="seed is missing.*takes 5 values"):
        check_call("generate", ["hi", [1, 1], "ric", 4], LIMITS)


def test_image_prompt():
    assert check_image_prompt(None, ("cat", "moon")) == ""  # the model's default
    assert check_image_prompt(" the moon at night ", ("cat", "moon")) == "the moon at night"
    assert check_image_prompt("a dog", ()) == "a dog"  # an unprompted model takes any caption
    with pytest.raises(
        InputError,
        match=r"prompt must name one of this model's subjects \(cat, moon\) or be "
        r"empty: the text 'a dog' names none of them",
    ):
        check_image_prompt("a dog", ("cat", "moon"))
    with pytest.raises(InputError, match="prompt must be at most 200 characters, got 201"):
        check_image_prompt("x" * 201)
    assert check_image_prompt(" " * 10 + "x" * 200 + " ") == "x" * 200  # counted once stripped
    with pytest.raises(InputError, match="prompt must be text, got list"):
        check_image_prompt(["cat"], ("cat",))
    with pytest.raises(InputError, match="prompt is missing.*takes 5 values"):
        check_call("generate_image", [[1, 1], "ric", 2, 0], LIMITS)
