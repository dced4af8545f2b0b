"""The JSON front's query string reading (jsonhttp/routes.py `parse_query`): what `parse_qs`
gives, for any query, the API server's `timeout=10s` without it."""

from __future__ import annotations

from urllib.parse import parse_qs

from hypothesis import given
from hypothesis import strategies as st

from pdp.net.jsonhttp.routes import parse_query

_PIECES = st.sampled_from(["timeout", "=", "&", "10s", "a", "", "%20", "+", ";", "é", " ", "=="])


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_parse_query_reads_what_parse_qs_reads(text: str) -> None:
    assert parse_query(text) == parse_qs(text)


def test_the_api_servers_timeout() -> None:
    assert parse_query("timeout=10s") == {"timeout": ["10s"]}
    assert parse_query("") == {}
