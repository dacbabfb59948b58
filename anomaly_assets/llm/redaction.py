"""What may leave the process: configured columns never do, personal data in free text is
masked, long strings are cut."""

import re

REDACTED = "<redacted>"
_HEX = r"[0-9a-fA-F]{1,4}"
_PATTERNS = (
    ("<email>", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("<card>", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("<ip>", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
    # IPv6, full (eight groups) or compressed (with "::"); clock times have too few groups.
    ("<ip>", re.compile(rf"(?<![\w:])(?:{_HEX}:){{7}}{_HEX}(?![\w:])")),
    (
        "<ip>",
        re.compile(
            rf"(?<![\w:])(?:{_HEX}:){{1,6}}:(?:{_HEX}(?::{_HEX}){{0,5}})?(?![\w:])"
        ),
    ),
    # Phone numbers: an optional +country code, then 3 digit groups; ISO dates do not match.
    (
        "<phone>",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ -]?)?(?:\(\d{2,4}\)[ -]?)?"
            r"\d{2,4}[ -]\d{3,4}[ -]\d{3,4}\b"
        ),
    ),
)


def mask_text(text: str) -> str:
    """Emails, card numbers, IP addresses and phone numbers replaced by placeholders."""
    for placeholder, pattern in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


def redact_record(record: dict, redact_columns: set[str], max_chars: int = 200) -> dict:
    """A copy of ``record`` safe to send: redacted columns, masked and truncated strings."""
    out = {}
    for key, value in record.items():
        if key in redact_columns:
            out[key] = REDACTED
        elif isinstance(value, str):
            masked = mask_text(value)
            out[key] = masked if len(masked) <= max_chars else masked[:max_chars] + "…"
        else:
            out[key] = value
    return out
