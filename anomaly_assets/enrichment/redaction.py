"""What may leave the process: configured columns never do, personal data and secrets in
free text are masked, long strings are cut.

``mask_text`` covers what turns up in event fields and error messages: emails, IPv4 / IPv6
addresses, payment card numbers (Luhn-valid only, so order ids survive), phone numbers,
IBANs (mod-97 valid), SSN-like numbers, JWTs, bearer tokens, credentials in URLs and
secret-looking query parameters. ``safe_url`` is how an endpoint appears in errors and logs.
"""

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"
_HEX = r"[0-9a-fA-F]{1,4}"
#: Query parameters whose values are secrets (Azure SAS ``sig``, ``api-key``, OAuth codes).
SECRET_PARAMS = (
    r"api[-_]?key|key|token|access[-_]?token|refresh[-_]?token|id[-_]?token|sig|"
    r"signature|secret|client[-_]?secret|password|passwd|pwd|code|auth|session"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "<card>" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group()


def _iban(match: re.Match) -> str:
    text = re.sub(r"\s", "", match.group()).upper()
    moved = text[4:] + text[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return "<iban>" if int(number) % 97 == 1 else match.group()


#: (replacement, pattern), applied in order: secrets inside URLs before the URL's parts
#: look like anything else, cards before phone numbers.
_PATTERNS = (
    ("<jwt>", re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*")),
    ("Bearer <token>", re.compile(r"(?i)\bbearer\s+[\w.~+/-]{8,}=*")),
    ("://<credentials>@", re.compile(r"://[^/\s:@]+:[^/\s@]+@")),
    # A header or assignment naming a secret: "api-key: 3f9c…", "Authorization: Basic …".
    (
        r"\g<1><redacted>",
        re.compile(
            r"(?i)(\b(?:api[-_]?key|x-api-key|authorization|password|passwd|secret|"
            r"client[-_]?secret|access[-_]?token|token)\b\"?\s*[:=]\s*\"?"
            r"(?:(?:basic|bearer|<token>)\s+)?)[^\s\",;&]+"
        ),
    ),
    (r"\g<1><redacted>", re.compile(rf"(?i)([?&;](?:{SECRET_PARAMS})=)[^&;#\s]+")),
    # The local part may hold any of RFC 5322's atom characters.
    ("<email>", re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")),
    (
        _iban,
        re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,3})?\b"),
    ),
    (_card, re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("<ssn>", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("<ip>", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
    # IPv6, full (eight groups) or compressed (with "::"); clock times have too few groups.
    ("<ip>", re.compile(rf"(?<![\w:])(?:{_HEX}:){{7}}{_HEX}(?![\w:])")),
    (
        "<ip>",
        re.compile(
            rf"(?<![\w:])(?:{_HEX}:){{1,6}}:(?:{_HEX}(?::{_HEX}){{0,5}})?(?![\w:])"
        ),
    ),
    # Phone numbers: an optional +country code, then 3 digit groups, or an area code in
    # brackets and 2; ISO dates do not match.
    (
        "<phone>",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ -]?)?(?:\(\d{2,4}\)[ -]?)?"
            r"\d{2,4}[ -]\d{3,4}[ -]\d{3,4}\b"
        ),
    ),
    (
        "<phone>",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ -]?)?\(\d{2,4}\)[ -]?\d{3,4}[ -]\d{3,4}\b"
        ),
    ),
)


def mask_text(text: str) -> str:
    """``text`` with personal data and secrets replaced by placeholders."""
    for replacement, pattern in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def safe_url(url: str) -> str:
    """``url`` without userinfo, query or fragment: how an endpoint may appear anywhere."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal keeps its brackets
            host = f"[{host}]"
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<url>"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


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
