"""The egress policy as pure logic: entries, address spellings, embedded IPv4, prefixes, hosts, CIDRs."""

from __future__ import annotations

import ipaddress

import pytest

from tributary_common.egress import (
    EgressPolicy,
    EgressRefused,
    Target,
    literal_ip,
    parse_allow_list,
    special_use,
    target_from_url,
)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[fe80::1%eth0]", "fe80::1"),
        ("::1", "::1"),
    ],
)
def test_every_literal_spelling_is_an_address(host: str, expected: str) -> None:
    assert literal_ip(host) == ip(expected)


@pytest.mark.parametrize("host", ["example.com", "256.1", "1.2.3.256", "09", "1..2", "-1", "1_0", "4294967296", "1 2"])
def test_names_and_invalid_numbers_are_not_addresses(host: str) -> None:
    assert literal_ip(host) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("2002:7f00:1::", "loopback"),  # 6to4
        ("64:ff9b::7f00:1", "loopback"),  # NAT64
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "private"),
        ("100.64.0.1", "non-public"),
    ],
)
def test_special_use_addresses(address: str, kind: str) -> None:
    assert special_use(ip(address)) == kind


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert special_use(ip(address)) is None


def test_the_rabbitmq_management_example_is_refused_without_an_entry() -> None:
    target = target_from_url("http://127.0.0.1:15672/api/overview")
    why = EgressPolicy().refusal(target, [ip("127.0.0.1")])
    assert why is not None and "loopback" in why and "TRIBUTARY_HTTP_ALLOW" in why
    with pytest.raises(EgressRefused):
        EgressPolicy().check(target, [ip("127.0.0.1")])


def test_urls_are_read_as_a_browser_reads_them() -> None:
    assert target_from_url("http://0x7f.1:15672/x").host == "127.0.0.1"
    assert target_from_url("http://2130706433/").host == "127.0.0.1"
    assert target_from_url("http://127.0.0.1\\@example.com/").host == "127.0.0.1"  # backslash is a slash
    assert target_from_url("https://a.example/v1/../admin") == Target("a.example", "https", 443, "/admin")
    with pytest.raises(EgressRefused):
        target_from_url("not a url")


def test_url_prefix_entries() -> None:
    policy = EgressPolicy.parse(["http://127.0.0.1:8080/allowed/", "https://api.example.com/v1"])
    loop = [ip("127.0.0.1")]
    assert policy.refusal(target_from_url("http://127.0.0.1:8080/allowed/x?q=1"), loop) is None
    assert policy.refusal(target_from_url("http://127.0.0.1:8080/allowed/"), loop) is None
    assert policy.refusal(target_from_url("http://127.0.0.1:8080/allowedx"), loop) is not None
    assert policy.refusal(target_from_url("http://127.0.0.1:8081/allowed/x"), loop) is not None  # another port
    assert policy.refusal(target_from_url("https://127.0.0.1:8080/allowed/x"), loop) is not None  # another scheme
    assert policy.refusal(target_from_url("http://localhost:8080/allowed/x"), loop) is not None  # another name
    assert policy.refusal(target_from_url("http://[::ffff:127.0.0.1]:8080/allowed/x"), loop) is None
    private = [ip("10.0.0.1")]
    assert policy.refusal(target_from_url("https://api.example.com/v1/x"), private) is None
    assert policy.refusal(target_from_url("https://api.example.com/v10"), private) is not None
    # Paths a server could read as another one never match a prefix.
    for path in ("/v1/%2e%2e/admin", "/v1/..%2fadmin", "/v1\\..\\admin", "/v1/%2E%2E/x"):
        assert policy.refusal(Target("api.example.com", "https", 443, path), private) is not None, path


def test_host_and_cidr_entries() -> None:
    policy = EgressPolicy.parse(["PLC.example.com.", "10.20.0.0/16", "fd00::/8", "192.168.1.7"])
    assert policy.refusal(Target("plc.example.com", "http", 80, "/"), [ip("10.9.9.9")]) is None
    assert policy.refusal(Target("plc.example.com"), [ip("10.9.9.9")]) is None  # a bare host field
    assert policy.refusal(Target("other.example.com"), [ip("10.9.9.9")]) is not None
    assert policy.refusal(Target("x"), [ip("10.20.3.4")]) is None
    assert policy.refusal(Target("x"), [ip("::ffff:10.20.3.4")]) is None  # mapped: judged as the IPv4
    assert policy.refusal(Target("x"), [ip("fd00::5")]) is None
    assert policy.refusal(Target("x"), [ip("192.168.1.7")]) is None
    assert policy.refusal(Target("x"), [ip("192.168.1.8")]) is not None
    # Every address must pass: a name with one public and one private address is refused.
    assert policy.refusal(Target("x"), [ip("8.8.8.8"), ip("192.168.1.8")]) is not None
    assert policy.refusal(Target("x"), []) is not None


def test_a_bare_host_is_matched_by_url_prefixes_of_its_scheme_only() -> None:
    policy = EgressPolicy.parse(["http://127.0.0.1:8080/", "mqtt://broker.local"])
    loop = [ip("127.0.0.1")]
    assert policy.refusal(Target("127.0.0.1"), loop) is not None  # an http entry does not open mqtt
    assert policy.refusal(Target("broker.local", "mqtt", 1883), [ip("10.0.0.2")]) is None
    assert policy.refusal(Target("broker.local", "mqtt", 1884), [ip("10.0.0.2")]) is not None


def test_allow_list_setting_forms_and_bad_entries() -> None:
    assert parse_allow_list("http://a.example/, 10.0.0.0/8 ,") == ["http://a.example/", "10.0.0.0/8"]
    assert parse_allow_list('["plc.example.com", "fd00::/8"]') == ["plc.example.com", "fd00::/8"]
    for bad in ("bad host!", "10.0.0.0/33", "ftp://", '["x", 1]', "[not json"):
        with pytest.raises(ValueError, match="TRIBUTARY_HTTP_ALLOW"):
            parse_allow_list(bad)
