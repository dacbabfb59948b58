"""Secrets and personal data are masked wherever they hide in free text, and what looks
alike but is not (timestamps, amounts, order ids) survives."""

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly_assets.enrichment.explainers import OpenAIExplainer
from anomaly_assets.enrichment.redaction import mask_text, safe_url

words = st.lists(
    st.text(string.ascii_letters, min_size=1, max_size=8), min_size=0, max_size=4
).map(" ".join)


def luhn_complete(body: str) -> str:
    """``body`` plus the check digit that makes it Luhn-valid."""
    for d in "0123456789":
        digits = body + d
        total = sum(
            (int(c) * 2 - 9 if int(c) * 2 > 9 else int(c) * 2) if i % 2 else int(c)
            for i, c in enumerate(reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError


def iban(country: str, bban: str) -> str:
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


secrets = st.one_of(
    st.emails(),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: ip.exploded),
    st.from_regex(r"4\d{14}", fullmatch=True).map(luhn_complete),
    st.from_regex(r"\d{3}-\d{2}-\d{4}", fullmatch=True),
    st.builds(
        iban,
        st.sampled_from(["DE", "FR", "GB", "NL"]),
        st.from_regex(r"[0-9]{18}", fullmatch=True),
    ),
    st.from_regex(
        r"eyJ[A-Za-z0-9_-]{10,30}\.[A-Za-z0-9_-]{10,40}\.[A-Za-z0-9_-]{10,40}",
        fullmatch=True,
    ),
    st.from_regex(r"Bearer [A-Za-z0-9._~+/-]{20,40}", fullmatch=True),
    st.from_regex(r"(\+\d{1,3} )?\(\d{3}\) \d{3}-\d{4}", fullmatch=True),
    st.from_regex(r"\+\d{1,3} \d{3} \d{3} \d{4}", fullmatch=True),
)
#: How a secret sits in a header or a config line, and the secret itself.
headers = st.tuples(
    st.sampled_from(
        ["api-key: {}", "Authorization: Basic {}", "x api_key={} y", "password={};"]
    ),
    st.from_regex(r"[A-Za-z0-9+/]{12,40}", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(before=words, secret=secrets, after=words)
def test_a_secret_anywhere_in_text_is_masked(before, secret, after):
    masked = mask_text(f"{before} {secret} {after}")
    assert secret not in masked
    assert "<" in masked


@given(headers)
def test_a_secret_in_a_header_or_assignment_is_masked(header):
    form, secret = header
    masked = mask_text(form.format(secret))
    assert secret not in masked.replace(form.format(""), "")
    assert "<" in masked


@given(
    user=st.text(string.ascii_letters + string.digits, min_size=1, max_size=10),
    password=st.text(
        string.ascii_letters + string.digits + "!$*", min_size=4, max_size=16
    ),
    token=st.text(string.ascii_letters + string.digits, min_size=8, max_size=24),
)
def test_url_credentials_and_query_tokens_are_masked(user, password, token):
    url = (
        f"https://{user}:{password}@contoso.openai.azure.com/openai?api-key={token}&x=1"
    )
    masked = mask_text(f"failed calling {url}")
    # exactly the credentials and the token go (a password such as "http" is also a
    # substring of the address, so "not in" would not say which part was masked)
    assert masked == (
        "failed calling https://<credentials>@contoso.openai.azure.com/openai"
        "?api-key=<redacted>&x=1"
    )
    assert safe_url(url) == "https://contoso.openai.azure.com/openai"


@given(
    st.datetimes().map(lambda t: t.isoformat()),
    st.decimals(0, 10**6, places=2).map(str),
    st.from_regex(r"4\d{14}", fullmatch=True).map(
        lambda body: body + str((int(luhn_complete(body)[-1]) + 1) % 10)
    ),
)
def test_timestamps_amounts_and_non_luhn_ids_survive(timestamp, amount, order_id):
    text = f"at {timestamp} amount {amount} order {order_id}"
    assert mask_text(text) == text


def test_an_ipv6_endpoint_keeps_its_brackets():
    assert safe_url("http://u:p@[::1]:8080/x?sig=1") == "http://[::1]:8080/x"


def test_the_probe_names_the_endpoint_without_its_secrets():
    endpoint = "http://admin:hunter2@127.0.0.1:9/openai?sig=s3cr3t-sig"
    explainer = OpenAIExplainer(None, "m", "azure_openai", endpoint, probe_timeout_s=1)
    message = explainer.probe()
    assert message.startswith("http://127.0.0.1:9/openai unreachable")
    assert "hunter2" not in message and "s3cr3t" not in message
