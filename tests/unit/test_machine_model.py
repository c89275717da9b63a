"""Machine names, sizes and port-forward specs: exact cases and hypothesis properties."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.errors import ValidationError
from toolbox.machine.model import (
    CreatePhase,
    PortForward,
    format_duration,
    parse_disk_gib,
    parse_forward,
    parse_memory_mib,
    validate_name,
)

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@pytest.mark.parametrize("name", ["default", "a", "dev-2", "0", "x" * 63, "a-", "9lives"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-a", "A", "Default", "a_b", "a.b", "..", ".", "a/b", "../x", "a\\b", "x" * 64, " a",
     "a ", "é", "a\n", "/abs"],
)  # fmt: skip
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_name(name)
    assert info.value.field == "name"
    assert info.value.hint


@given(st.text(alphabet=string.printable + "äé/\\.", max_size=80))
def test_name_validation_matches_the_pattern(text: str) -> None:
    if NAME.fullmatch(text):
        assert validate_name(text) == text
    else:
        with pytest.raises(ValidationError):
            validate_name(text)


@given(st.from_regex(NAME, fullmatch=True))
def test_every_pattern_name_is_a_plain_folder_name(name: str) -> None:
    validate_name(name)
    assert "/" not in name and "\\" not in name and name not in (".", "..")


@pytest.mark.parametrize(
    ("text", "mib"),
    [("2048", 2048), ("2g", 2048), ("2G", 2048), ("2GiB", 2048), ("2gb", 2048),
     ("1.5G", 1536), ("512m", 512), ("512MiB", 512), ("1T", 1024 * 1024), (" 1024 ", 1024),
     ("262144k", 256)],
)  # fmt: skip
def test_memory_sizes(text: str, mib: int) -> None:
    assert parse_memory_mib(text) == mib


@pytest.mark.parametrize("text", ["", "abc", "-1", "0", "100", "1.3m", "2x", "1e3", "1..2g"])
def test_bad_memory_sizes(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_memory_mib(text)
    assert info.value.field == "memory"


@pytest.mark.parametrize(
    ("text", "gib"), [("20", 20), ("20g", 20), ("20GiB", 20), ("1t", 1024), ("4096m", 4)]
)
def test_disk_sizes(text: str, gib: int) -> None:
    assert parse_disk_gib(text) == gib


@pytest.mark.parametrize("text", ["1", "1.5", "1000m", "0", "x", "100T"])
def test_bad_disk_sizes(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_disk_gib(text)


@given(st.integers(min_value=256, max_value=1024 * 1024))
def test_memory_round_trips_in_mib_and_gib(mib: int) -> None:
    assert parse_memory_mib(str(mib)) == mib
    assert parse_memory_mib(f"{mib}M") == mib
    if mib % 1024 == 0:
        assert parse_memory_mib(f"{mib // 1024}G") == mib


@given(st.text(max_size=30))
def test_size_parsers_only_raise_validation_errors(text: str) -> None:
    for parse in (parse_memory_mib, parse_disk_gib):
        try:
            value = parse(text)
        except ValidationError:
            continue
        assert isinstance(value, int) and value > 0


@pytest.mark.parametrize(
    ("text", "forward"),
    [
        ("8080:80", PortForward(8080, 80)),
        ("8080", PortForward(8080, 8080)),
        ("127.0.0.1:8080:80", PortForward(8080, 80)),
        ("localhost:8080:80/tcp", PortForward(8080, 80)),
        ("5353:53/udp", PortForward(5353, 53, "udp")),
        ("5353:53/UDP", PortForward(5353, 53, "udp")),
    ],
)
def test_forward_specs(text: str, forward: PortForward) -> None:
    assert parse_forward(text) == forward


@pytest.mark.parametrize(
    "text",
    ["", "0:80", "65536:80", "80:0", "a:b", "0.0.0.0:8080:80", "192.168.1.2:80:80",
     "80:80/sctp", "1:2:3:4", ":80", "80:"],
)  # fmt: skip
def test_bad_forward_specs(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_forward(text)
    assert info.value.field == "port"


def test_forward_on_a_public_address_is_refused_with_a_hint() -> None:
    with pytest.raises(ValidationError) as info:
        parse_forward("0.0.0.0:8080:80")
    assert "127.0.0.1" in (info.value.hint or "")


@given(
    st.integers(1, 65535),
    st.integers(1, 65535),
    st.sampled_from(["tcp", "udp"]),
    st.booleans(),
)
def test_forward_round_trip(host: int, guest: int, proto: str, with_ip: bool) -> None:
    text = f"{'127.0.0.1:' if with_ip else ''}{host}:{guest}/{proto}"
    forward = parse_forward(text)
    assert (forward.host_port, forward.guest_port, forward.protocol) == (host, guest, proto)
    assert forward.host_ip == "127.0.0.1"
    assert parse_forward(str(forward).replace("->", ":")) == forward


@given(st.text(max_size=40))
def test_forward_parser_only_raises_validation_errors(text: str) -> None:
    try:
        forward = parse_forward(text)
    except ValidationError:
        return
    assert 1 <= forward.host_port <= 65535 and 1 <= forward.guest_port <= 65535
    assert forward.host_ip == "127.0.0.1"


def test_phases_are_ordered() -> None:
    assert CreatePhase.PROVISION.after(CreatePhase.BOOT)
    assert not CreatePhase.NEW.after(CreatePhase.IMAGE)
    assert CreatePhase.DONE.after(CreatePhase.CONTEXT)
    assert all(p.title for p in CreatePhase)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.04, "0.0s"), (12.34, "12.3s"), (185, "3m05s"), (3725, "1h02m05s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["²", "8080:²", "١٢:80", "8080:80/tcp²"])
def test_non_ascii_digits_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_forward(text)
