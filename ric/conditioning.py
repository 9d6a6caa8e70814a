"""Reward-in-context prompts: write desired reward values into the prompt as plain-text tags.

RiC conditions a model by appending tags such as ``<rm1_score> 1.2 <rm2_score> -0.6`` to the
prompt (METHOD.md section 3). Tags are ordinary text, not special tokens, so the format must be
identical in training and inference: it lives in a `ConditioningFormat` that is saved with every
artifact. User text is sanitized first so it can never add or override a tag.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

STYLES = ("chat", "hh", "summary")
POSITIONS = ("user_end", "system", "assistant_start")
HH_HUMAN = "\n\nHuman: "
HH_ASSISTANT = "\n\nAssistant:"
SUMMARY_INSTRUCTION = "### Instruction: Generate a one-sentence summary of this post."

# Any "<rm1_score>" or "<rm1>" lookalike, any case and spacing: "< RM 2 _ Score >", "</rm1>";
# then any leftover opening "<rm1..." that a removal may have spliced together.
_RM_TAG = re.compile(r"<\s*/?\s*r\s*m\s*\d+\s*(?:_?\s*s\s*c\s*o\s*r\s*e\s*)?>", re.IGNORECASE)
_RM_OPEN = re.compile(r"<\s*/?\s*r\s*m\s*\d", re.IGNORECASE)


@dataclass
class ConditioningFormat:
    """How reward tags are written and where they go.

    style: "chat" (the tokenizer's chat template), "hh" (HH-RLHF "\\n\\nHuman: ...\\n\\nAssistant:"
        text, the released LLM format) or "summary" (the released summarization format).
    tag: tag template; ``{i}`` is the 1-based reward index, ``{name}`` the reward's name.
    position: for "chat", append the tags to the end of the last user turn ("user_end") or put
        them in the system turn ("system"), or open the assistant turn with them, on a line of
        their own, right before the response ("assistant_start": nearest to what they steer).
    decimals: values are rounded to this many decimals, as in the paper (1).
    """

    style: str = "chat"
    tag: str = "<rm{i}_score>"
    position: str = "user_end"
    decimals: int = 1

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        if self.position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {self.position!r}")
        if "{i}" not in self.tag and "{name}" not in self.tag:
            raise ValueError(f"tag template needs {{i}} or {{name}}, got {self.tag!r}")
        if not (isinstance(self.decimals, int) and 0 <= self.decimals <= 4):
            raise ValueError(f"decimals must be an int in [0, 4], got {self.decimals!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ConditioningFormat:
        return cls(**d)


def _tag_pattern(fmt: ConditioningFormat) -> re.Pattern:
    """A regex matching this format's tags with whitespace and case variations."""
    parts = re.split(r"(\{i\}|\{name\})", fmt.tag)
    out = []
    for part in parts:
        if part == "{i}":
            out.append(r"\s*\d+\s*")
        elif part == "{name}":
            out.append(r"\s*[\w.:/-]+\s*")
        else:
            out.append(r"\s*".join(re.escape(ch) for ch in part if not ch.isspace()))
    return re.compile("".join(out), re.IGNORECASE)


def sanitize_user_text(text: str, fmt: ConditioningFormat | None = None) -> str:
    """Neutralize every reward tag in user text so it cannot add or override conditioning.

    Matches both the ``<rm1_score>`` and ``<rm1>`` styles in any case and spacing (after Unicode
    NFKC folding, so full-width brackets are caught too), plus the configured tag template. The
    brackets are dropped, leaving the words: ``"<rm1_score> 9"`` becomes ``"rm1_score 9"``.

    >>> sanitize_user_text("hi <RM1_score> 9.9 < rm2 > 5")
    'hi rm1_score 9.9 rm2 5'
    """
    if not isinstance(text, str):
        raise ValueError(f"user text must be a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text)
    patterns = [_RM_TAG, _RM_OPEN] + ([_tag_pattern(fmt)] if fmt is not None else [])

    def strip(m: re.Match) -> str:
        return re.sub(r"\W", "", m.group(0)).lower()

    # Loop: removing one tag must not splice the remains into a new one ("<<rm1>rm1>").
    while True:
        new = text
        for pat in patterns:
            new = pat.sub(strip, new)
        if new == text:
            return text
        text = new


def _check_rewards(rewards: Sequence[float], names: Sequence[str] | None) -> np.ndarray:
    try:
        values = np.asarray(rewards, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"rewards must be a sequence of numbers, got {rewards!r}") from e
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"rewards must be a non-empty 1-D sequence, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"rewards must be finite, got {values.tolist()}")
    if names is not None and len(names) != values.size:
        raise ValueError(f"got {values.size} rewards for {len(names)} reward names")
    return values


def format_reward_tags(
    rewards: Sequence[float], fmt: ConditioningFormat | None = None, names: Sequence[str] = ()
) -> str:
    """``"<rm1_score> 1.2 <rm2_score> -0.6"`` for rewards (1.23, -0.6)."""
    fmt = fmt or ConditioningFormat()
    values = _check_rewards(rewards, names or None)
    if "{name}" in fmt.tag and not names:
        raise ValueError("this tag template uses {name}: pass the reward names")
    out = []
    for i, v in enumerate(values):
        tag = fmt.tag.format(i=i + 1, name=names[i] if names else "")
        # "+ 0.0" turns a rounded -0.0 into 0.0 so equal values always give equal text.
        out.append(f"{tag} {round(float(v), fmt.decimals) + 0.0:.{fmt.decimals}f}")
    return " ".join(out)


def parse_reward_tags(text: str, fmt: ConditioningFormat | None = None) -> list[float]:
    """The reward values written in a conditioned prompt, in tag order (inverse of formatting)."""
    fmt = fmt or ConditioningFormat()
    number = r"\s*(-?\d+(?:\.\d+)?)"
    return [float(m.group(1)) for m in re.finditer(_tag_pattern(fmt).pattern + number, text)]


Messages = list[dict[str, str]]


def format_conditioned_prompt(
    prompt: str | Messages,
    rewards: Sequence[float],
    fmt: ConditioningFormat | None = None,
    tokenizer=None,
    names: Sequence[str] = (),
    system: str | None = None,
) -> str:
    """The full model input for a prompt conditioned on desired (normalized) rewards.

    prompt: user text, or for the "chat" style a list of {"role", "content"} messages whose last
        one is from the user. All user-supplied text is sanitized.
    tokenizer: required for "chat"; its chat template renders the conversation and the
        generation prompt. Tags go at the end of the last user turn or into the system turn.

    The reward models must score the prompt WITHOUT tags: keep the original text for them.
    """
    fmt = fmt or ConditioningFormat()
    tags = format_reward_tags(rewards, fmt, names)
    if fmt.style == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("the 'chat' style needs a tokenizer with a chat template")
        messages = _clean_messages(prompt, fmt)
        if fmt.position == "user_end":
            messages[-1]["content"] = f"{messages[-1]['content']} {tags}"
        if system is not None or fmt.position == "system":
            sys_text = sanitize_user_text(system or "", fmt)
            if fmt.position == "system":
                sys_text = f"{sys_text} {tags}".strip()
            messages = [m for m in messages if m["role"] != "system"]
            messages.insert(0, {"role": "system", "content": sys_text})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{text}{tags}\n" if fmt.position == "assistant_start" else text

    if not isinstance(prompt, str):
        raise ValueError(f"the {fmt.style!r} style takes the prompt as one str")
    text = sanitize_user_text(prompt, fmt)
    if fmt.style == "hh":
        # removesuffix, never rstrip: rstrip("\n\nAssistant:") eats a set of characters and
        # would cut "...what is an ant" down to "...what is an" (the released code's bug).
        if not text.lstrip().startswith("Human:"):
            text = f"{HH_HUMAN}{text}"
        return f"{text.removesuffix(HH_ASSISTANT)} {tags} {HH_ASSISTANT}"
    return f"{SUMMARY_INSTRUCTION} ### Input: {text} {tags} ### Response:"


def format_plain_prompt(
    prompt: str | Messages,
    tokenizer,
    fmt: ConditioningFormat | None = None,
    system: str | None = None,
) -> str:
    """The chat-template model input WITHOUT reward tags (base models, baselines), user text
    sanitized all the same; `system` adds or replaces the system turn."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("a plain chat prompt needs a tokenizer with a chat template")
    messages = _clean_messages(prompt, fmt or ConditioningFormat())
    if system is not None:
        messages = [m for m in messages if m["role"] != "system"]
        messages.insert(0, {"role": "system", "content": system})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _clean_messages(prompt: str | Messages, fmt: ConditioningFormat) -> Messages:
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise ValueError("prompt must be a str or a non-empty list of chat messages")
    messages = []
    for m in prompt:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError(f"each chat message needs a str 'content', got {m!r}")
        if m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"chat roles are system, user or assistant, got {m.get('role')!r}")
        # Earlier assistant turns are model output, but they pass through user hands in a chat
        # UI, so they are sanitized too.
        messages.append({"role": m["role"], "content": sanitize_user_text(m["content"], fmt)})
    if messages[-1]["role"] != "user":
        raise ValueError("the last chat message must be from the user")
    return messages
