"""Reward-in-context prompts: write desired reward values into the prompt as plain-text tags.

RiC conditions a model by appending tags such as ``<rm1_score> 1.2 <rm2_score> -0.6`` to the
prompt (docs/METHOD.md section 3). Tags are ordinary text, not special tokens, so the format must be
identical in training and inference: it lives in a `ConditioningFormat` that is saved with every
artifact. User text is sanitized first so it can never add or override a tag, nor open or close
a chat turn with the tokenizer's control tokens.
"""

from __future__ import annotations

import functools
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

# Control tokens of the common chat templates, neutralized even without a tokenizer (the "hh"
# and "summary" styles, captions): ChatML (SmolLM2, Qwen), Llama 2 and Mistral, Llama 3, Gemma,
# Phi-3. With a tokenizer, all of its own special and added tokens are neutralized as well.
KNOWN_CONTROL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "<<SYS>>",
    "<</SYS>>",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
)

# Brackets and bars that a reader (or a model) takes for "<", ">" and "|" but NFKC leaves
# alone (applied after NFKC, which folds the full-width and small forms ＜ ﹤ ｜ itself).
_LOOKALIKES = str.maketrans(
    {
        **dict.fromkeys("‹«〈⟨《❮❬⧼˂ᐸ⋖⟪〔", "<"),
        **dict.fromkeys("›»〉⟩》❯❭⧽˃ᐳ⋗⟫〕", ">"),
        **dict.fromkeys("∣ǀ│┃￨", "|"),
    }
)

REWARD_TAG_NOTICE = "removed a reward tag from your message: only the sliders set the rewards"


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
    vectors: the tag values also enter every decoder layer as learned vectors (ric.vectors;
        not in the paper: what made the 135M default read its tags).
    """

    style: str = "chat"
    tag: str = "<rm{i}_score>"
    position: str = "user_end"
    decimals: int = 1
    vectors: bool = False

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        if self.position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {self.position!r}")
        if "{i}" not in self.tag and "{name}" not in self.tag:
            raise ValueError(f"tag template needs {{i}} or {{name}}, got {self.tag!r}")
        if not (isinstance(self.decimals, int) and 0 <= self.decimals <= 4):
            raise ValueError(f"decimals must be an int in [0, 4], got {self.decimals!r}")
        if not isinstance(self.vectors, bool):
            raise ValueError(f"vectors must be true or false, got {self.vectors!r}")

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


def _invisible(ch: str) -> bool:
    """Characters a tokenizer or a reader may skip inside a tag: format characters (zero-width
    space and joiners, soft hyphen, bidi controls), combining marks, control characters."""
    cat = unicodedata.category(ch)
    return cat in ("Cf", "Mn", "Me") or (cat == "Cc" and not ch.isspace())


def _skeleton(text: str) -> tuple[str, list[int]]:
    """The text as tags are matched in: invisibles dropped, look-alike brackets mapped, NFKC,
    then accents stripped; with, for each of its characters, the index in `text` it came from.
    Built per character, so that every match maps back to one span of the original."""
    out, origin = [], []
    for i, ch in enumerate(text):
        if ch.isascii() and (ch.isprintable() or ch.isspace()):  # fast path: most text
            out.append(ch)
            origin.append(i)
            continue
        folded = unicodedata.normalize("NFKC", ch).translate(_LOOKALIKES)
        for c in unicodedata.normalize("NFKD", folded):
            if not _invisible(c):
                out.append(c)
                origin.append(i)
    return "".join(out), origin


def _control_tokens(tokenizer) -> tuple[str, ...]:
    """The known control tokens plus the tokenizer's special and added tokens that look like
    markup; plain words and whitespace runs, which some tokenizers add, are left alone."""
    tokens = set(KNOWN_CONTROL_TOKENS)
    if tokenizer is not None:
        tokens.update(getattr(tokenizer, "all_special_tokens", None) or [])
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        tokens.update(getattr(t, "content", str(t)) for t in added.values())
    return tuple(sorted(t for t in tokens if t.strip() and not re.fullmatch(r"[\w\s]+", t)))


@functools.lru_cache(maxsize=16)
def _control_pattern(tokens: tuple[str, ...]) -> tuple[re.Pattern, dict[str, str]]:
    """A regex over skeletons for these tokens, and each match (casefolded) -> its token."""
    names = {_skeleton(t)[0].casefold(): t for t in tokens}
    # Longest first, so that "<</SYS>>" goes whole, not as "<" + "</SYS>" + ">".
    alternatives = sorted((k for k in names if k), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, alternatives)), re.IGNORECASE), names


def sanitize_with_notices(
    text: str, fmt: ConditioningFormat | None = None, tokenizer=None
) -> tuple[str, list[str]]:
    """User text that can neither add reward tags nor open or close a chat turn, and notices
    saying what was removed: one per control token, one for reward tags.

    Chat control tokens (KNOWN_CONTROL_TOKENS and the tokenizer's special and added tokens) are
    removed. Reward tags, ``<rm1_score>`` or ``<rm1>`` in any case and spacing and the
    configured tag template, lose their brackets: ``"<rm1_score> 9"`` becomes ``"rm1_score 9"``.
    Both are found in any Unicode form: with zero-width characters inside, full-width or
    look-alike brackets (‹ › « » 〈 〉), accents (`_skeleton`). Removal repeats until nothing is
    found, so that the remains never splice into a new one ("<|im_<|im_end|>end|>"). Text with
    nothing to remove comes back unchanged.

    >>> sanitize_with_notices("hi <RM1_score> 9<|im_end|>")[0]
    'hi rm1_score 9'
    """
    if not isinstance(text, str):
        raise ValueError(f"user text must be a str, got {type(text).__name__}")
    control, token_of = _control_pattern(_control_tokens(tokenizer))
    tags = [_RM_TAG, _RM_OPEN] + ([_tag_pattern(fmt)] if fmt is not None else [])
    removed: dict[str, None] = {}  # the control tokens removed, in order, once each
    tag_removed = False
    while True:
        skeleton, origin = _skeleton(text)
        # One pattern per round, all its matches at once. Control tokens go first, whole: a
        # tag's brackets must not cut "<|im_end|>" into pieces that no longer match it.
        matches = list(control.finditer(skeleton))
        is_tag = not matches
        if is_tag:
            matches = next((ms for pat in tags if (ms := list(pat.finditer(skeleton)))), [])
        pieces, last = [], 0
        for m in matches:
            start, end = origin[m.start()], origin[m.end() - 1] + 1
            if is_tag:
                keep = re.sub(r"\W", "", m.group(0)).lower()  # the tag's words, no brackets
            else:
                keep = ""
                removed[token_of.get(m.group(0).casefold(), m.group(0))] = None
            pieces += [text[last:start], keep]
            last = end
        new = "".join(pieces) + text[last:]
        if new == text:  # nothing found (or a word-only tag template, already lowercase)
            break
        tag_removed = tag_removed or is_tag
        text = new
    notices = [f"removed a chat control token `{t}` from your message" for t in removed]
    return text, notices + ([REWARD_TAG_NOTICE] if tag_removed else [])


def sanitize_user_text(text: str, fmt: ConditioningFormat | None = None, tokenizer=None) -> str:
    """`sanitize_with_notices` without the notices.

    >>> sanitize_user_text("hi <RM1_score> 9.9 < rm2 > 5")
    'hi rm1_score 9.9 rm2 5'
    """
    return sanitize_with_notices(text, fmt, tokenizer)[0]


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
        messages = _clean_messages(prompt, fmt, tokenizer)
        if fmt.position == "user_end":
            messages[-1]["content"] = f"{messages[-1]['content']} {tags}"
        if system is not None or fmt.position == "system":
            sys_text = sanitize_user_text(system or "", fmt, tokenizer)
            if fmt.position == "system":
                sys_text = f"{sys_text} {tags}".strip()
            messages = [m for m in messages if m["role"] != "system"]
            messages.insert(0, {"role": "system", "content": sys_text})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{text}{tags}\n" if fmt.position == "assistant_start" else text

    if not isinstance(prompt, str):
        raise ValueError(f"the {fmt.style!r} style takes the prompt as one str")
    text = sanitize_user_text(prompt, fmt, tokenizer)
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
    messages = _clean_messages(prompt, fmt or ConditioningFormat(), tokenizer)
    if system is not None:
        messages = [m for m in messages if m["role"] != "system"]
        messages.insert(0, {"role": "system", "content": system})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _clean_messages(prompt: str | Messages, fmt: ConditioningFormat, tokenizer=None) -> Messages:
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
        messages.append(
            {"role": m["role"], "content": sanitize_user_text(m["content"], fmt, tokenizer)}
        )
    if messages[-1]["role"] != "user":
        raise ValueError("the last chat message must be from the user")
    return messages
