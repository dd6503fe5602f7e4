"""CaseOps: the April records' lossless case transform (#1729, used by #1736-#1855), written for golf.

Text is lower-cased letter run by letter run, each run's capitals recorded by operator characters that the
CaseOps tokenizer reserves as single tokens (ids 4-7 of ``fineweb_8192_bpe_lossless_caps_caseops_v1_reserved``):

    TITLE   U+E001  the next run of ASCII letters starts with a capital ("Paris" -> TITLE "paris")
    ALLCAPS U+E002  the whole next run (two letters or more) is capitals ("NASA" -> ALLCAPS "nasa")
    CAPNEXT U+E003  the next letter, inside a run, is a capital ("iPhone" -> "i" CAPNEXT "phone")
    ESC     U+E004  the next character is literal (how text that already holds U+E001..U+E004 is kept)

Only ASCII letters [A-Za-z] are transformed: a run is a maximal sequence of them, and every other character
(digits, punctuation, whitespace, non-ASCII letters of any case, combining marks) passes through and ends a
run. So no Unicode case mapping (ß -> SS, İ -> i̇) is ever applied, and ``decode(encode(s)) == s`` for every
string. A run that is neither all lower case, nor all capitals (2+ letters), nor Title case spells its shape
out: TITLE for a capital first letter, then CAPNEXT before each later capital ("McDonald" -> TITLE "mc"
CAPNEXT "donald").

The byte sidecar: val_bpb on CaseOps data counts the bytes of the ORIGINAL text, not of the transformed one.
``original_bytes`` gives each character of the transformed text the original UTF-8 bytes it stands for
(operators 0, an escaped literal its 3, anything else its own length); ``token_bytes`` shares them out over
a document's tokens by the spans SentencePiece reports, so that a document's tokens sum to its UTF-8 length
exactly (whitespace SentencePiece drops at either end goes to the first or last token).
"""

from __future__ import annotations

from collections.abc import Sequence

TITLE, ALLCAPS, CAPNEXT, ESC = "\ue001", "\ue002", "\ue003", "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)


class CaseOpsError(ValueError):
    """Text that no ``encode`` output can be: a dangling or misplaced operator."""


def _is_letter(ch: str) -> bool:
    return "a" <= ch <= "z" or "A" <= ch <= "Z"


def _is_upper(ch: str) -> bool:
    return "A" <= ch <= "Z"


def _encode_run(run: str) -> str:
    low = run.lower()
    if run == low:
        return run
    if len(run) > 1 and all(_is_upper(c) for c in run):
        return ALLCAPS + low
    if _is_upper(run[0]) and run[1:] == low[1:]:
        return TITLE + low
    head = (TITLE if _is_upper(run[0]) else "") + low[0]
    return head + "".join(CAPNEXT + c.lower() if _is_upper(c) else c for c in run[1:])


def encode(text: str) -> str:
    """The CaseOps form of ``text`` (module docstring)."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch in OPERATORS:
            out.append(ESC + ch)
            i += 1
        elif _is_letter(ch):
            j = i + 1
            while j < n and _is_letter(text[j]):
                j += 1
            out.append(_encode_run(text[i:j]))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def decode(text: str) -> str:
    """The text whose CaseOps form is ``text``; raises CaseOpsError on what ``encode`` never writes."""
    out: list[str] = []
    escaped = capnext = allcaps = False
    title = in_run = False
    for ch in text:
        if escaped:
            out.append(ch)
            escaped = allcaps = in_run = False
        elif ch == ESC:
            escaped = True
        elif ch in (TITLE, ALLCAPS):
            if title or allcaps or capnext or in_run:
                raise CaseOpsError(f"{'TITLE' if ch == TITLE else 'ALLCAPS'} inside a run at character {len(out)}")
            title, allcaps = ch == TITLE, ch == ALLCAPS
        elif ch == CAPNEXT:
            if not in_run or capnext or allcaps:
                raise CaseOpsError(f"CAPNEXT outside a run at character {len(out)}")
            capnext = True
        elif _is_letter(ch):
            out.append(ch.upper() if (title or capnext or allcaps) else ch)
            title = capnext = False
            in_run = True
        else:
            if title or capnext:
                raise CaseOpsError(f"a case operator before {ch!r}, not before a letter, at character {len(out)}")
            out.append(ch)
            allcaps = in_run = False
    if escaped or title or capnext or (allcaps and not in_run):
        raise CaseOpsError("the text ends with a dangling operator")
    return "".join(out)


def original_bytes(transformed: str) -> list[int]:
    """For each character of a CaseOps text, the UTF-8 bytes of the original text it stands for."""
    out, escaped = [], False
    for ch in transformed:
        if escaped:
            out.append(3)
            escaped = False
        elif ch in OPERATORS:
            out.append(0)
            escaped = ch == ESC
        else:
            out.append(len(ch.encode("utf-8")))
    return out


def token_bytes(transformed: str, spans: Sequence[tuple[int, int]]) -> list[int]:
    """Original bytes per token of a CaseOps text, given each token's [begin, end) span in its UTF-8 form (as
    SentencePiece reports them): every character's bytes go to the last token whose span holds its first byte
    (a character split into byte-fallback tokens counts on the last of them); characters no span holds
    (whitespace dropped at either end, or inside, by the tokenizer's normalizer) go to the token before them,
    or the first token. The sum is the original text's UTF-8 length."""
    if not spans:
        return []
    per_char = original_bytes(transformed)
    out, t, pos = [0] * len(spans), 0, 0
    for ch, b in zip(transformed, per_char):
        while t + 1 < len(spans) and spans[t + 1][0] <= pos:
            t += 1
        out[t] += b
        pos += len(ch.encode("utf-8"))
    return out


def check_caseops_tokenizer(sp, path) -> None:
    """Refuse a tokenizer that does not hold the four operators as single pieces (its text would be split into
    byte-fallback tokens, and its scores would not be the records')."""
    missing = [f"U+{ord(op):04X}" for op in OPERATORS if sp.encode(op) != [sp.piece_to_id(op)] or sp.piece_to_id(op) == sp.unk_id()]
    if missing:
        raise CaseOpsError(f"{path}: tokenizer lacks the CaseOps operators {', '.join(missing)} as pieces; use "
                           f"fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model or prepare_data.py "
                           f"--train-tokenizer --caseops")
