"""Retry delays and callback URL checks: pure functions, tested for their invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuvem.backoff import backoff
from nuvem.errors import BadRequest
from nuvem.jobs.callback_url import Unresolved, check_callback_url, check_resolved

pytestmark = pytest.mark.anyio


@given(
    retry=st.integers(1, 200),
    base=st.floats(0.001, 60),
    cap=st.floats(0.001, 3600),
    rand=st.floats(0, 1),
)
def test_delay_is_within_half_and_all_of_the_capped_exponential(
    retry: int, base: float, cap: float, rand: float
) -> None:
    delay = backoff(retry, base, cap, lambda: rand)
    exponential = min(cap, base * 2.0 ** (retry - 1))
    assert exponential / 2 <= delay <= exponential + 1e-9
    assert delay <= cap + 1e-9


def test_delay_doubles_until_the_cap() -> None:
    no_jitter = [backoff(r, 1.0, 10.0, lambda: 1.0) for r in range(1, 7)]
    assert no_jitter == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize(
    "url",
    ["http://example.com/cb", "https://10.0.0.5:8443/x?y=1", "http://127.0.0.1:9000/"],
)
def test_ordinary_urls_pass(url: str) -> None:
    assert check_callback_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file:///etc/passwd", "http or https"),
        ("gopher://x", "http or https"),
        ("http:///nohost", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "invalid port"),
        ("http://169.254.169.254/latest/", "metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://100.100.100.200/", "metadata"),
        ("http://metadata.google.internal./", "metadata"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
    ],
)
def test_dangerous_urls_are_refused_with_the_fix(url: str, problem: str) -> None:
    with pytest.raises(BadRequest, match=problem) as caught:
        check_callback_url(url)
    assert "NUVEM_CALLBACK_ALLOW_HOSTS" in str(caught.value)


def test_allowed_hosts_pass_even_when_link_local() -> None:
    url = "http://169.254.10.10/hook"
    assert check_callback_url(url, frozenset({"169.254.10.10"})) == url


async def test_names_are_checked_once_resolved() -> None:
    await check_resolved("http://localhost:1/")  # loopback is allowed
    # Not a refusal (DNS may come back, and the allow list would not help): retried.
    with pytest.raises(Unresolved, match="does not resolve"):
        await check_resolved("http://no-such-host.invalid/")
