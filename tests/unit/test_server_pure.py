"""Pure pieces of the server: host checks, bind parsing, error text, response_format."""

from __future__ import annotations

import socket

import pytest

from lokal.config import parse_host
from lokal.errors import InvalidOptions
from lokal.http_client import is_loopback_host
from lokal.server.openai_api import _format
from lokal.server.security import host_is_local


@pytest.mark.parametrize(
    "header",
    ["localhost", "localhost:11434", "127.0.0.1:11434", "127.5.5.5", "[::1]:8080", "[::1]", "", "app.localhost:3000"],
)
def test_local_host_headers_are_allowed(header):
    assert host_is_local(header)


def test_the_machines_own_name_is_allowed():
    assert host_is_local(f"{socket.gethostname()}:11434")


@pytest.mark.parametrize(
    "header", ["evil.example", "evil.example:11434", "10.0.0.5:11434", "192.168.1.2", "[2001:db8::1]:80"]
)
def test_foreign_host_headers_are_refused(header):
    assert not host_is_local(header)


@pytest.mark.parametrize(
    ("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False)]
)
def test_is_loopback_host(host, loopback):
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:11434", ("127.0.0.1", 11434)),
        (":8080", ("127.0.0.1", 8080)),
        ("0.0.0.0", ("0.0.0.0", 11434)),
        ("http://[::1]:9", ("::1", 9)),
        ("https://example.com", ("example.com", 443)),
        ("http://localhost", ("localhost", 80)),
    ],
)
def test_parse_host_reads_ollama_host_forms(text, expected):
    assert parse_host(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:port", "127.0.0.1:70000"])
def test_parse_host_rejects_bad_ports(text):
    with pytest.raises(InvalidOptions, match="invalid host"):
        parse_host(text)


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (None, None),
        ({"type": "text"}, None),
        ({"type": "json_object"}, "json"),
        ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}, {"type": "object"}),
    ],
)
def test_response_format_maps_to_an_engine_format(response_format, expected):
    assert _format(response_format) == expected


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": None},
        {"type": "json_schema", "json_schema": [[], {}]},  # found by the fuzzer: was an AttributeError, a 500
        {"type": "json_schema", "json_schema": {"schema": "object"}},
        {"type": "yaml"},
    ],
)
def test_a_malformed_response_format_is_a_clear_error(response_format):
    with pytest.raises(InvalidOptions, match="response_format"):
        _format(response_format)
