"""Egress policy of the connectors that reach out (http, mqtt): may this URL or host be reached at these addresses?

Pure logic, no I/O: callers resolve names and hand the addresses in (the hub at unitop creation, ingest on every
connection). Public addresses are allowed; loopback, link-local (cloud metadata at 169.254.169.254), private,
shared, multicast, reserved and unspecified ones only when an operator's `TRIBUTARY_HTTP_ALLOW` entry matches:

- a URL prefix `https://api.example.com/v1/` (scheme, host, port and a path under it),
- a host `plc.example.com` (any scheme, port and path on that name),
- an address or CIDR `10.20.0.0/16`, `fd00::/8`, `10.0.0.5`.

Addresses embedded in IPv6 (IPv4-mapped `::ffff:127.0.0.1`, IPv4-compatible, 6to4, NAT64) are judged as the IPv4
address they carry. IPv4 hosts are read the way URL parsers and `inet_aton` read them (`2130706433`, `0x7f.1`,
`0177.0.0.1`, `127.1` are all 127.0.0.1), so no spelling gets a literal address past the check.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from pydantic_core import Url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "TRIBUTARY_HTTP_ALLOW"
DEFAULT_PORTS = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883, "opc.tcp": 4840, "modbus": 502}
MAX_ENTRIES = 256
MAX_ENTRY_LENGTH = 2048
_HOST_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_IPV4_PART_RE = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPAT = ipaddress.IPv6Network("::/96")


class EgressRefused(ValueError):
    """The target is not allowed: the message names it, the address and why."""


@dataclass(frozen=True)
class Target:
    """Where a connector wants to go. `port`/`path` None: not known (any matches a URL-prefix entry); `scheme`
    None: not known (only host and CIDR entries match)."""

    host: str
    scheme: str | None = None
    port: int | None = None
    path: str | None = None


@dataclass(frozen=True)
class _Prefix:
    scheme: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class EgressPolicy:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    prefixes: tuple[_Prefix, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        """The policy of `TRIBUTARY_HTTP_ALLOW` entries; `ValueError` names a bad entry."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        prefixes: list[_Prefix] = []
        items = [e.strip() for e in entries if e.strip()]
        if len(items) > MAX_ENTRIES:
            raise ValueError(f"{SETTING}: {len(items)} entries, over the limit of {MAX_ENTRIES}")
        for entry in items:
            if len(entry) > MAX_ENTRY_LENGTH:
                raise ValueError(f"{SETTING}: an entry is over {MAX_ENTRY_LENGTH} characters")
            if "://" in entry:
                prefixes.append(_parse_prefix(entry))
            elif (ip := literal_ip(entry)) is not None:
                networks.append(ipaddress.ip_network(_unembed(ip)))
            elif "/" in entry:
                try:
                    net = ipaddress.ip_network(entry, strict=False)
                except ValueError as exc:
                    raise ValueError(f"{SETTING}: {entry!r} is not a CIDR ({exc})") from None
                networks.append(net)
            else:
                hosts.add(_host_entry(entry))
        return cls(tuple(networks), frozenset(hosts), tuple(prefixes))

    def allows_by_name(self, target: Target) -> bool:
        """True when a host or URL-prefix entry allows `target` whatever its addresses."""
        host = normalize_host(target.host)
        if host in self.hosts:
            return True
        return any(_prefix_matches(p, target, host) for p in self.prefixes)

    def refusal(self, target: Target, addresses: Sequence[IPAddress]) -> str | None:
        """Why `target` at `addresses` is refused, or None when it is allowed. Every address must pass: the caller
        may connect to any of them."""
        if self.allows_by_name(target):
            return None
        if not addresses:
            return f"{target.host!r} has no address"
        for address in addresses:
            ip = _unembed(address)
            if any(ip.version == n.version and ip in n for n in self.networks):
                continue
            why = special_use(ip)
            if why is not None:
                host = target.host if str(address) == target.host.strip("[]") else f"{target.host} ({address})"
                return f"{describe(target)}: {host} is a {why} address, not allowed without a {SETTING} entry"
        return None

    def check(self, target: Target, addresses: Sequence[IPAddress]) -> None:
        """Raise `EgressRefused` unless allowed."""
        why = self.refusal(target, addresses)
        if why is not None:
            raise EgressRefused(why)


def describe(target: Target) -> str:
    """`http://host:port/path` for a URL target, the host alone for a host target."""
    if target.scheme is None or target.path is None:
        return target.host
    host = f"[{target.host}]" if ":" in target.host and not target.host.startswith("[") else target.host
    port = "" if target.port is None else f":{target.port}"
    return f"{target.scheme}://{host}{port}{target.path}"


def special_use(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is (`loopback`, `link-local`, `private` …), None for a public one."""
    ip = _unembed(ip)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if not ip.is_global:
        return "non-public"
    return None


def _unembed(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), else `ip` itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string denotes literally (any IPv4 spelling, `[v6]` or bare v6), None for a name."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            return ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            return None
    return _ipv4_number(h)


def _ipv4_number(host: str) -> ipaddress.IPv4Address | None:
    """WHATWG URL / inet_aton IPv4 parsing: 1-4 dot-separated parts, each decimal, octal (0…) or hex (0x…)."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART_RE.fullmatch(p) for p in parts):
        return None
    numbers = [_ipv4_part(p) for p in parts]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _ipv4_part(part: str) -> int:
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    return int(part, 8) if part.startswith("0") else int(part)


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, no brackets; a literal address in its canonical form."""
    ip = literal_ip(host)
    if ip is not None:
        return str(_unembed(ip))
    return host.strip().strip("[]").lower().rstrip(".")


def target_from_url(url: str) -> Target:
    """The target of a URL as a WHATWG parser sees it (the one pydantic uses, so the hub and ingest agree)."""
    try:
        parsed = Url(url)
    except ValueError as exc:
        raise EgressRefused(f"{url!r} is not a URL: {exc}") from None
    if not parsed.host:
        raise EgressRefused(f"{url!r} has no host")
    return Target(parsed.host, parsed.scheme, parsed.port or DEFAULT_PORTS.get(parsed.scheme), parsed.path or "/")


def _parse_prefix(entry: str) -> _Prefix:
    try:
        t = target_from_url(entry)
    except EgressRefused as exc:
        raise ValueError(f"{SETTING}: {exc}") from None
    if t.scheme is None or t.port is None or t.path is None:
        raise ValueError(f"{SETTING}: {entry!r} needs a scheme with a known default port, or an explicit port")
    return _Prefix(t.scheme, normalize_host(t.host), t.port, t.path)


def _host_entry(entry: str) -> str:
    host = normalize_host(entry)
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{SETTING}: {entry!r} is not a host name") from None
    if not _HOST_RE.match(host):
        raise ValueError(f"{SETTING}: {entry!r} is neither a URL prefix, a host name nor a CIDR")
    return host


def _prefix_matches(prefix: _Prefix, target: Target, host: str) -> bool:
    if host != prefix.host:
        return False
    if target.scheme is None or target.scheme.lower() != prefix.scheme:
        return False  # a bare host (scheme unknown) is allowed by host and CIDR entries only
    if target.port is not None and target.port != prefix.port:
        return False
    if target.path is None:
        return True
    path = _safe_path(target.path)
    if path is None:
        return False
    base = prefix.path
    return path == base or path.startswith(base if base.endswith("/") else base + "/")


def _safe_path(path: str) -> str | None:
    """The path for prefix matching, None when a server might read it as another path (encoded dots or slashes,
    backslashes, dot segments)."""
    lowered = path.lower()
    if "\\" in path or "%2f" in lowered or "%5c" in lowered:
        return None
    segments = unquote(path).split("/")
    if any(s in (".", "..") for s in segments):
        return None
    return path or "/"


def parse_allow_list(raw: object) -> list[str]:
    """`TRIBUTARY_HTTP_ALLOW` as given (comma-separated, a JSON list, or a list), every entry checked."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{SETTING}: not a JSON list: {exc}") from None
        else:
            raw = text.split(",")
    if not isinstance(raw, list | tuple) or not all(isinstance(e, str) for e in raw):
        raise ValueError(f"{SETTING}: expected a list of strings")
    entries = [e.strip() for e in raw if e.strip()]
    EgressPolicy.parse(entries)
    return entries


# The JSON Schema key a connector's params model puts on a field that names where it connects: "url" (an http(s)
# URL) or "host" (a host name or address, with its scheme under SCHEME_MARK so URL-prefix entries can match it).
# The hub checks marked fields of unitop items with the same policy.
SCHEMA_MARK = "x-tributary-egress"
SCHEME_MARK = "x-tributary-egress-scheme"
