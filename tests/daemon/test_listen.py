"""The daemon's listen address: parsing HOST:PORT, and one sentence for an address it cannot bind."""

from __future__ import annotations

import errno
import socket

import pytest

from keyorch.daemon import listen_error
from keyorch.listen import parse_listen


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("localhost:1", ("localhost", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        (":8080", ("0.0.0.0", 8080)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:9000", ("::", 9000)),
        ("::1:8080", ("::1", 8080)),  # the port is after the last colon
        ("keyorch.example.com:443", ("keyorch.example.com", 443)),
    ],
)
def test_parse_listen_accepts_host_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is not HOST:PORT"),
        ("localhost", "is not HOST:PORT"),
        ("127.0.0.1:", "has the port ''"),
        ("127.0.0.1:0", "a port from 1 to 65535"),
        ("127.0.0.1:65536", "a port from 1 to 65535"),
        ("127.0.0.1:-1", "has the port '-1'"),
        ("127.0.0.1:http", "has the port 'http'"),
        ("127.0.0.1: 80", "has the port ' 80'"),
        ("127.0.0.1:\u0668\u0660", "a port from 1 to 65535"),  # Arabic-Indic digits are not a port
        ("127.0.0.1:" + "9" * 5000, "a port from 1 to 65535"),
        ("[::1:8080", "IPv6 host goes in brackets"),
        ("::1]:8080", "IPv6 host goes in brackets"),
        ("[]:8080", "IPv6 host goes in brackets"),
        ("[localhost]:8080", "IPv6 host goes in brackets"),
        ("exa mple:8080", "not a host name or address"),
        ("a..b:8080", "a label is empty or longer than 63 characters"),
        ("x" * 70 + ".com:8080", "a label is empty or longer than 63 characters"),
    ],
)
def test_parse_listen_refuses_naming_the_value_and_what_is_allowed(value: str, message: str) -> None:
    with pytest.raises(ValueError, match="listen address") as caught:
        parse_listen(value)
    text = str(caught.value)
    assert message in text and len(text) < 300
    assert repr(value[:20])[:-1] in text


@pytest.mark.parametrize(
    ("exc", "host", "expected"),
    [
        (OSError(errno.EADDRINUSE, "bind failed"), "127.0.0.1", "cannot listen on 127.0.0.1:8080: the address is "),
        (OSError(errno.EADDRINUSE, "bind failed"), "::1", "cannot listen on [::1]:8080: the address is already in use"),
        (OSError(errno.EADDRNOTAVAIL, "x"), "10.9.9.9", "10.9.9.9 is not an address of this machine"),
        (OSError(errno.EACCES, "x"), "0.0.0.0", "permission denied (ports below 1024"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "nowhere", "'nowhere' cannot be resolved"),
        (OSError(errno.EMFILE, "x"), "127.0.0.1", "cannot listen on 127.0.0.1:8080: Too many open files;"),
    ],
)
def test_listen_error_is_one_sentence_exit_2(exc: OSError, host: str, expected: str) -> None:
    error = listen_error(exc, host, 8080)
    assert error.exit_code == 2 and error.target == "listen"
    assert expected in error.message and "\n" not in error.message and "Errno" not in error.message
