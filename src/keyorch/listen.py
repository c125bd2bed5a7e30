"""A listen address, ``HOST:PORT``: parsed once, for the setting ``api.listen`` and for ``--listen``."""

from __future__ import annotations

import ipaddress

_LISTEN_EXAMPLE = "e.g. 0.0.0.0:8080, localhost:8080 or [::1]:8080"


def parse_listen(value: str, subject: str | None = None) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port); an IPv6 host in brackets; an empty host means every interface.

    Raises ``ValueError`` with one sentence naming the value and what is allowed; it begins with ``subject``
    (default: ``listen address 'VALUE'``), e.g. ``it`` where the value is named already.
    """
    host, sep, port = value.rpartition(":")
    shown = subject or ("listen address " + (repr(value) if len(value) <= 80 else repr(value[:77]) + "..."))
    if not sep:
        raise ValueError(f"{shown} is not HOST:PORT; give one, {_LISTEN_EXAMPLE}")
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        raise ValueError(
            f"{shown} has the port {port[:12]!r}; give HOST:PORT with a port from 1 to 65535 ({_LISTEN_EXAMPLE})"
        )
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1]
        if not (host.startswith("[") and host.endswith("]") and inner and ":" in inner and "[" not in inner):
            raise ValueError(f"{shown} has the host {host[:60]!r}; an IPv6 host goes in brackets: give e.g. [::1]:8080")
        host = inner
    if host != host.strip() or any(c.isspace() or not c.isprintable() for c in host) or len(host) > 253:
        raise ValueError(
            f"{shown} has the host {host[:60]!r}, which is not a host name or address; "
            f"give HOST:PORT, {_LISTEN_EXAMPLE}"
        )
    if host and not _is_ip_address(host):
        try:
            host.encode("idna")
        except UnicodeError:
            raise ValueError(
                f"{shown} has the host {host[:60]!r}, which is not a host name "
                "(a label is empty or longer than 63 characters); give one whose labels have 1 to 63 each"
            ) from None
    return host or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":8080" means all interfaces


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
