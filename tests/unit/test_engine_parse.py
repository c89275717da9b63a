"""Parsers for ports, env, volumes, image references, sizes and docker's duration wording.

Each parser gets examples, a round-trip property, and a "never crash" property: arbitrary
text either parses or raises ValidationError with a reason, never another exception.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from toolbox.engine.parse import (
    EnvVar,
    ImageRef,
    PortSpec,
    RestartPolicy,
    VolumeSpec,
    format_size,
    human_duration,
    parse_env,
    parse_human_duration,
    parse_image_ref,
    parse_port,
    parse_size,
    parse_volume,
)
from toolbox.errors import ValidationError

# Text that looks like the inputs (colons, slashes, digits, brackets) finds more edge cases
# than uniformly random unicode; both are used.
_SHAPED = st.text(alphabet="0123456789:/-[].abcftpu@=~\\ CZrows", max_size=30)
_ANY = st.one_of(st.text(max_size=40), _SHAPED)


def _never_crashes(parser, text: str) -> None:
    try:
        parser(text)
    except ValidationError as exc:
        assert exc.message, "a ValidationError must say why"
        assert exc.field


# ---------------------------------------------------------------------------- ports


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80", [PortSpec(80, "tcp", None, None)]),
        ("80/udp", [PortSpec(80, "udp", None, None)]),
        ("8080:80", [PortSpec(80, "tcp", None, 8080)]),
        ("127.0.0.1:8080:80", [PortSpec(80, "tcp", "127.0.0.1", 8080)]),
        ("127.0.0.1::80", [PortSpec(80, "tcp", "127.0.0.1", None)]),
        ("[::1]:8080:80/tcp", [PortSpec(80, "tcp", "::1", 8080)]),
        ("53:53/UDP", [PortSpec(53, "udp", None, 53)]),
        (
            "8000-8001:80-81",
            [PortSpec(80, "tcp", None, 8000), PortSpec(81, "tcp", None, 8001)],
        ),
        ("80-82", [PortSpec(p, "tcp", None, None) for p in (80, 81, 82)]),
        ("  8080:80  ", [PortSpec(80, "tcp", None, 8080)]),
    ],
)
def test_parse_port_examples(text: str, expected: list[PortSpec]) -> None:
    assert list(parse_port(text)) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("http", "not a number"),
        ("8080:", "not a number"),
        (":80", "no host port"),
        ("70000:80", "out of range"),
        ("0:80", "out of range"),
        ("8080:80/icmp", "protocol"),
        ("8000-8002:80-81", "differ in length"),
        ("81-80", "backwards"),
        ("::1:8080:80", "too many colons"),
        ("300.1.1.1:80:80", "not an IP address"),
        ("80 81", "spaces"),
        ("8080:٨٠", "not a number"),  # Arabic-Indic digits are not port numbers
    ],
)
def test_parse_port_rejects_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as info:
        parse_port(text)
    assert info.value.field == "ports"


_ports = st.integers(1, 65535)
_ips = st.one_of(
    st.none(),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: str(ipaddress.ip_address(a))),
)


@given(_ports, st.sampled_from(["tcp", "udp", "sctp"]), _ips, st.one_of(st.none(), _ports))
def test_port_spec_round_trips(container: int, proto: str, ip: str | None, host) -> None:
    spec = PortSpec(container, proto, ip, host)
    assert parse_port(str(spec)) == (spec,)


@given(_ANY)
def test_parse_port_never_crashes(text: str) -> None:
    _never_crashes(parse_port, text)


# ---------------------------------------------------------------------------- env


def test_parse_env_examples() -> None:
    assert parse_env("A=1") == EnvVar("A", "1")
    assert parse_env("URL=postgres://u:p@h/db?x=1") == EnvVar("URL", "postgres://u:p@h/db?x=1")
    assert parse_env("EMPTY=") == EnvVar("EMPTY", "")
    assert parse_env("SPACED=a b ") == EnvVar("SPACED", "a b ")


@pytest.mark.parametrize(
    ("text", "reason"),
    [("KEY", "use KEY=VALUE"), ("=1", "empty"), ("MY KEY=1", "spaces"), ("", "KEY=VALUE")],
)
def test_parse_env_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        parse_env(text)


_env_keys = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters="="), min_size=1
).filter(lambda k: k == k.strip() and not any(c.isspace() for c in k))


@given(_env_keys, st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))))
def test_env_round_trips(key: str, value: str) -> None:
    var = EnvVar(key, value)
    assert parse_env(str(var)) == var


@given(_ANY)
def test_parse_env_never_crashes(text: str) -> None:
    _never_crashes(parse_env, text)


# ---------------------------------------------------------------------------- volumes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "/srv/site:/usr/share/nginx/html",
            VolumeSpec("/srv/site", "/usr/share/nginx/html", False, "bind"),
        ),
        ("/srv/site:/data:ro", VolumeSpec("/srv/site", "/data", True, "bind")),
        ("/srv/site:/data:rw", VolumeSpec("/srv/site", "/data", False, "bind")),
        (
            "pgdata:/var/lib/postgresql/data",
            VolumeSpec("pgdata", "/var/lib/postgresql/data", False, "volume"),
        ),
        ("my.vol_1:/d:ro", VolumeSpec("my.vol_1", "/d", True, "volume")),
        ("C:\\Users\\me\\x:/data", VolumeSpec("C:\\Users\\me\\x", "/data", False, "bind")),
        ("c:/Users/me:/data:ro", VolumeSpec("c:/Users/me", "/data", True, "bind")),
        ("/cache", VolumeSpec(None, "/cache", False, "volume")),
    ],
)
def test_parse_volume_examples(text: str, expected: VolumeSpec) -> None:
    assert parse_volume(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("./site:/data", "absolute path"),
        ("~/site:/data", "absolute path"),
        ("site:data", "must be absolute"),
        ("/a:/b:rx", "use ro or rw"),
        ("/a:/b:ro:z", "too many"),
        ("ab:/b:ro:x", "too many"),
        ("a:/b", "no container path"),
        ("x:/b", "no container path"),
        ("bad name!:/b", "valid volume name"),
        ("/a:/", "root"),
        (":/b", "nothing before"),
    ],
)
def test_parse_volume_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        parse_volume(text)


_path_part = st.text("abcxyz0189_.-", min_size=1, max_size=8)
_abs_path = st.lists(_path_part, min_size=1, max_size=4).map(lambda ps: "/" + "/".join(ps))
_win_path = st.tuples(st.sampled_from("CDcz"), st.lists(_path_part, min_size=1, max_size=3)).map(
    lambda t: f"{t[0]}:\\" + "\\".join(t[1])
)
_vol_name = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,20}", fullmatch=True)


@given(
    st.one_of(
        st.builds(
            lambda s, t, ro: VolumeSpec(s, t, ro, "bind"),
            st.one_of(_abs_path, _win_path),
            _abs_path,
            st.booleans(),
        ),
        st.builds(
            lambda s, t, ro: VolumeSpec(s, t, ro, "volume"), _vol_name, _abs_path, st.booleans()
        ),
        st.builds(lambda t, ro: VolumeSpec(None, t, ro, "volume"), _abs_path, st.booleans()),
    )
)
def test_volume_round_trips(spec: VolumeSpec) -> None:
    assert parse_volume(str(spec)) == spec


@given(_ANY)
def test_parse_volume_never_crashes(text: str) -> None:
    _never_crashes(parse_volume, text)


# ---------------------------------------------------------------------------- image refs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", ImageRef(None, "busybox", None, None)),
        ("nginx:1.25-alpine", ImageRef(None, "nginx", "1.25-alpine", None)),
        ("library/redis:7", ImageRef(None, "library/redis", "7", None)),
        ("127.0.0.1:5000/team/app:v2", ImageRef("127.0.0.1:5000", "team/app", "v2", None)),
        ("localhost/app", ImageRef("localhost", "app", None, None)),
        ("ghcr.io/owner/repo", ImageRef("ghcr.io", "owner/repo", None, None)),
        ("[::1]:5000/x:y", ImageRef("[::1]:5000", "x", "y", None)),
        ("a__b.c--d", ImageRef(None, "a__b.c--d", None, None)),
        (
            "alpine@sha256:" + "a" * 64,
            ImageRef(None, "alpine", None, "sha256:" + "a" * 64),
        ),
        (
            "alpine:3@sha256:" + "0" * 64,
            ImageRef(None, "alpine", "3", "sha256:" + "0" * 64),
        ),
    ],
)
def test_parse_image_ref_examples(text: str, expected: ImageRef) -> None:
    ref = parse_image_ref(text)
    assert ref == expected
    assert str(ref) == text


def test_image_ref_default_tag_and_name() -> None:
    assert str(parse_image_ref("busybox").with_default_tag()) == "busybox:latest"
    assert str(parse_image_ref("busybox:1").with_default_tag()) == "busybox:1"
    digest = "x@sha256:" + "f" * 64
    assert str(parse_image_ref(digest).with_default_tag()) == digest
    assert parse_image_ref("127.0.0.1:5000/a/b:c").name == "127.0.0.1:5000/a/b"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Busybox", "must be lowercase"),
        ("busy box", "spaces"),
        ("busybox:", "Tag ''"),
        ("busybox:-x", "Tag"),
        ("a//b", "not a valid repository"),
        ("-abc", "not a valid repository"),
        ("x@sha256:abc", "not a valid digest"),
        ("x@sha256:" + "a" * 40, "64 hex"),
        ("exa_mple.com/x", "not a valid registry"),
        ("a" * 300, "longer than"),
        (":tag", "no repository"),
    ],
)
def test_parse_image_ref_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        parse_image_ref(text)


_component = st.from_regex(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", fullmatch=True).filter(
    lambda s: len(s) < 30
)
_registry = st.one_of(
    st.none(),
    st.sampled_from(["localhost", "localhost:5000", "127.0.0.1:5000", "ghcr.io", "[::1]:443"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]\.[a-z]{2,5}(:[0-9]{1,5})?", fullmatch=True),
)


@st.composite
def _image_refs(draw) -> ImageRef:
    registry = draw(_registry)
    parts = draw(st.lists(_component, min_size=1, max_size=3))
    first = parts[0]
    # Without a registry, a first part with '.' would be read as a registry (like docker).
    assume(registry is not None or len(parts) == 1 or ("." not in first and first != "localhost"))
    tag = draw(
        st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
    )
    digest = draw(st.one_of(st.none(), st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)))
    return ImageRef(registry, "/".join(parts), tag, digest)


@given(_image_refs())
def test_image_ref_round_trips(ref: ImageRef) -> None:
    assert parse_image_ref(str(ref)) == ref


@given(_ANY)
def test_parse_image_ref_never_crashes(text: str) -> None:
    _never_crashes(parse_image_ref, text)


# ---------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5GB", 1_500_000_000),
        ("512m", 512_000_000),
        ("512MB", 512_000_000),
        ("100", 100),
        ("100b", 100),
        ("2 kB", 2000),
        ("1GiB", 1 << 30),
        ("0.5k", 500),
        (".5MB", 500_000),
    ],
)
def test_parse_size_examples(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_binary_like_docker_memory() -> None:
    assert parse_size("512m", binary=True) == 512 * 1024 * 1024
    assert parse_size("2g", binary=True) == 2 << 30


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a size"),
        ("1.5XB", "unit"),
        ("-1", "not a size"),
        ("1e9", "not a size"),
        ("9" * 30 + "EB", "too large"),
    ],
)
def test_parse_size_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (1_500_000_000, "1.5GB"),
        (512_000_000, "512MB"),
        (4_431_234, "4.43MB"),
        (999_999, "1MB"),
        (1_234_567_890_123, "1.23TB"),
    ],
)
def test_format_size_like_docker(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(0, 10**18))
def test_size_round_trips_within_display_precision(size: int) -> None:
    back = parse_size(format_size(size))
    if size < 1000:
        assert back == size
    else:
        assert abs(back - size) <= size * 0.005 + 1


@given(_ANY)
def test_parse_size_never_crashes(text: str) -> None:
    _never_crashes(parse_size, text)


# ---------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "Less than a second"),
        (0.9, "Less than a second"),
        (1, "1 second"),
        (5, "5 seconds"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (300, "5 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5399, "About an hour"),
        (5400, "2 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (14 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (2 * 365 * 86400, "2 years"),
        (-5, "Less than a second"),
    ],
)
def test_human_duration_matches_docker(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@given(st.floats(0, 60 * 365 * 86400, allow_nan=False))
def test_human_duration_inverse_is_stable(seconds: float) -> None:
    text = human_duration(seconds)
    back = parse_human_duration(text)
    assert back is not None
    assert back <= seconds + 1e-6
    assert human_duration(back) == text


def test_parse_human_duration_rejects_other_text() -> None:
    assert parse_human_duration("soon") is None
    assert parse_human_duration("3 fortnights") is None


def test_restart_policy_values_and_parse() -> None:
    assert [p.value for p in RestartPolicy] == ["no", "always", "on-failure", "unless-stopped"]
    assert RestartPolicy.parse(" On-Failure ") is RestartPolicy.ON_FAILURE
    assert RestartPolicy.from_api("") is RestartPolicy.NO
    with pytest.raises(ValidationError, match="one of"):
        RestartPolicy.parse("sometimes")
