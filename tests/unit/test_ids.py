"""Tests for aztp_agents.ids: SPIFFE conformance vectors, AZTP IDs, names and the sanitizer."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aztp_agents.errors import InvalidIdError, InvalidNameError
from aztp_agents.ids import (
    AztpId,
    SpiffeId,
    TrustDomain,
    is_valid_aztp_id,
    parse_aztp_id,
    parse_spiffe_id,
    sanitize_name,
    validate_name,
    validate_trust_domain,
)

DATA = Path(__file__).parents[1] / "data"


def _load_vectors() -> list[Any]:
    params = []
    for filename in ("spiffe_id_vectors.json", "spiffe_id_charset_vectors.json"):
        vectors = json.loads((DATA / filename).read_text(encoding="utf-8"))
        for index, vector in enumerate(vectors):
            test_id = f"{Path(filename).stem}[{index}] {vector['source']}"
            params.append(pytest.param(vector, id=test_id))
    return params


VECTORS = _load_vectors()


def test_vector_counts() -> None:
    assert len(json.loads((DATA / "spiffe_id_vectors.json").read_text())) == 118
    assert len(json.loads((DATA / "spiffe_id_charset_vectors.json").read_text())) == 510
    assert len(VECTORS) == 628


@pytest.mark.parametrize("vector", VECTORS)
def test_conformance_vector(vector: dict[str, Any]) -> None:
    text = vector["input"]
    if vector["target"] == "spiffe_id":
        parse = parse_spiffe_id
    else:
        assert vector["target"] == "trust_domain"
        parse = TrustDomain.parse
    if vector["valid"]:
        parsed = parse(text)
        if isinstance(parsed, SpiffeId):
            assert str(parsed) == text
            assert parse_spiffe_id(str(parsed)) == parsed
        else:
            assert str(parsed) == text
            assert validate_trust_domain(text) == text
    else:
        with pytest.raises(InvalidIdError) as excinfo:
            parse(text)
        hint = vector.get("expected_error_hint")
        if hint:
            assert hint.lower() in str(excinfo.value).lower()
        assert excinfo.value.rule
        assert excinfo.value.code == "invalid_id"


# --- SPIFFE IDs and trust domains ---------------------------------------------------------


def test_spiffe_id_parts() -> None:
    sid = parse_spiffe_id("spiffe://example.org/a/b.c/d_e")
    assert sid.trust_domain == TrustDomain("example.org")
    assert sid.path == "/a/b.c/d_e"
    assert sid.segments == ("a", "b.c", "d_e")
    assert str(sid) == "spiffe://example.org/a/b.c/d_e"
    assert SpiffeId.parse(str(sid)) == sid
    assert parse_spiffe_id("spiffe://example.org").segments == ()


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty"),
        ("spiffe://example.org/a\n", "path_charset"),
        ("spiffe://example.org\n", "trust_domain_charset"),
        ("\nspiffe://example.org", "scheme"),
        ("spiffe://Example.org", "trust_domain_charset"),
        ("spiffe://example.org/a//b", "path_empty_segment"),
        ("spiffe://example.org/a/", "path_trailing_slash"),
        ("spiffe://example.org/a/..", "path_dot_segment"),
        ("spiffe://example.org/" + "a" * 2048, "too_long"),
        ("spiffe://" + "a" * 256, "trust_domain_too_long"),
        ("aztp://example.org/workload/production/node/x1", "scheme"),
    ],
)
def test_spiffe_id_rules(text: str, rule: str) -> None:
    with pytest.raises(InvalidIdError) as excinfo:
        parse_spiffe_id(text)
    assert excinfo.value.rule == rule


def test_spiffe_length_limit_is_bytes() -> None:
    base = "spiffe://example.org/"
    ok = base + "a" * (2048 - len(base))
    assert len(ok) == 2048
    assert str(parse_spiffe_id(ok)) == ok
    with pytest.raises(InvalidIdError):
        parse_spiffe_id(ok + "a")
    # Non-ASCII never passes (and is measured in bytes, not characters).
    with pytest.raises(InvalidIdError):
        parse_spiffe_id(base + "é" * 1500)


@pytest.mark.parametrize("bad", [None, 42, b"spiffe://example.org", ["spiffe://x"]])
def test_non_string_ids_rejected(bad: Any) -> None:
    for parse in (parse_spiffe_id, parse_aztp_id, TrustDomain.parse, validate_trust_domain):
        with pytest.raises(InvalidIdError) as excinfo:
            parse(bad)
        assert excinfo.value.rule == "type"
    assert is_valid_aztp_id(bad) is False


def test_trust_domain_forms() -> None:
    td = TrustDomain.parse("example.org")
    assert td == TrustDomain.parse("spiffe://example.org")
    assert td.name == "example.org"
    assert str(td) == "example.org"
    assert td.id_string() == "spiffe://example.org"
    assert validate_trust_domain("spiffe://example.org") == "example.org"
    with pytest.raises(InvalidIdError) as excinfo:
        TrustDomain.parse("spiffe://example.org/path")
    assert excinfo.value.rule == "trust_domain_has_path"
    with pytest.raises(InvalidIdError) as excinfo:
        TrustDomain.parse("example.org\n")
    assert excinfo.value.rule == "trust_domain_charset"
    with pytest.raises(InvalidIdError, match="lower case"):
        TrustDomain.parse("Example.org")
    with pytest.raises(InvalidIdError, match="trust domain is missing"):
        TrustDomain.parse("")
    assert TrustDomain.parse("a" * 255).name == "a" * 255
    with pytest.raises(InvalidIdError) as excinfo:
        TrustDomain.parse("a" * 256)
    assert excinfo.value.rule == "trust_domain_too_long"


def test_constructors_validate() -> None:
    with pytest.raises(InvalidIdError):
        TrustDomain("Example.org")
    with pytest.raises(InvalidIdError):
        TrustDomain("")
    with pytest.raises(InvalidIdError):
        SpiffeId(TrustDomain("example.org"), "/a/")
    with pytest.raises(InvalidIdError):
        SpiffeId("example.org", "/a")  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError):
        AztpId(TrustDomain("example.org"), "production", "node", "-bad")
    with pytest.raises(InvalidIdError):
        AztpId(TrustDomain("example.org"), "prod/x", "node", "agent")
    assert SpiffeId(TrustDomain("example.org"), "/a") == parse_spiffe_id("spiffe://example.org/a")


def test_values_are_frozen_hashable_and_picklable() -> None:
    aid = parse_aztp_id("aztp://astha.ai/workload/production/node/chat-service")
    with pytest.raises(AttributeError):
        aid.name = "other"  # type: ignore[misc]
    assert {aid, parse_aztp_id(str(aid))} == {aid}
    for value in (aid, aid.to_spiffe(), aid.trust_domain):
        assert pickle.loads(pickle.dumps(value)) == value


# --- AZTP IDs -----------------------------------------------------------------------------

SEED_IDS = [
    "aztp://astha.ai/workload/production/node/chat-service",
    "aztp://astha.ai/workload/production/node/analytics-service",
    "aztp://gptarticles.xyz/workload/production/node/content-generator",
    "aztp://gptapps.ai/workload/production/node/app-processor",
    "aztp://domain/workload/prod/node/service1",
    "aztp://aztp.network/workload/prod/node/service1",
]


@pytest.mark.parametrize("text", SEED_IDS)
def test_seed_aztp_ids_valid(text: str) -> None:
    aid = parse_aztp_id(text)
    assert str(aid) == text
    assert is_valid_aztp_id(text)
    assert AztpId.parse(text) == aid
    assert aid.spiffe_id == "spiffe://" + text[len("aztp://") :]
    assert str(aid.to_spiffe()) == aid.spiffe_id
    assert AztpId.from_spiffe(aid.spiffe_id) == aid
    assert AztpId.from_spiffe(aid.to_spiffe()) == aid


def test_aztp_id_parts() -> None:
    aid = parse_aztp_id("aztp://astha.ai/workload/staging/k8s/team/chat-service")
    assert aid.trust_domain == TrustDomain("astha.ai")
    assert aid.environment == "staging"
    assert aid.method == "k8s"
    assert aid.name == "team/chat-service"
    assert aid.path == "/workload/staging/k8s/team/chat-service"
    assert aid.to_spiffe().segments == ("workload", "staging", "k8s", "team", "chat-service")


def test_aztp_build() -> None:
    aid = AztpId.build("astha.ai", "chat-service")
    assert str(aid) == "aztp://astha.ai/workload/production/node/chat-service"
    assert AztpId.build(TrustDomain("astha.ai"), "chat-service") == aid
    assert AztpId.build("spiffe://astha.ai", "chat-service") == aid
    other = AztpId.build("astha.ai", "a/b", environment="dev", method="k8s")
    assert str(other) == "aztp://astha.ai/workload/dev/k8s/a/b"
    with pytest.raises(InvalidNameError, match="//"):
        AztpId.build("astha.ai", "a//b")
    with pytest.raises(InvalidNameError):
        AztpId.build("astha.ai", "x")
    with pytest.raises(InvalidIdError) as excinfo:
        AztpId.build("Astha.ai", "chat-service")
    assert excinfo.value.rule == "trust_domain_charset"
    for env in ("", ".", "..", "a/b", "prod\n", "pröd"):
        with pytest.raises(InvalidIdError) as excinfo:
            AztpId.build("astha.ai", "chat-service", environment=env)
        assert excinfo.value.rule == "aztp_environment"
    with pytest.raises(InvalidIdError) as excinfo:
        AztpId.build("astha.ai", "chat-service", method="")
    assert excinfo.value.rule == "aztp_method"
    with pytest.raises(InvalidIdError) as excinfo:
        AztpId.build("astha.ai", "chat-service", environment="e" * 2100)
    assert excinfo.value.rule == "too_long"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty"),
        ("AZTP://astha.ai/workload/production/node/chat-service", "scheme"),
        ("Aztp://astha.ai/workload/production/node/chat-service", "scheme"),
        ("aztp:/astha.ai/workload/production/node/chat-service", "scheme"),
        ("spiffe://astha.ai/workload/production/node/chat-service", "scheme"),
        ("http://astha.ai/workload/production/node/chat-service", "scheme"),
        (" aztp://astha.ai/workload/production/node/chat-service", "scheme"),
        ("aztp://Astha.ai/workload/production/node/chat-service", "trust_domain_charset"),
        ("aztp://ASTHA.AI/workload/production/node/chat-service", "trust_domain_charset"),
        ("aztp://astha.ai:443/workload/production/node/chat-service", "trust_domain_charset"),
        ("aztp://user@astha.ai/workload/production/node/chat-service", "trust_domain_charset"),
        ("aztp:///workload/production/node/chat-service", "trust_domain_missing"),
        ("aztp://astha.ai", "aztp_path"),
        ("aztp://astha.ai/workload", "aztp_path"),
        ("aztp://astha.ai/workload/production", "aztp_path"),
        ("aztp://astha.ai/workload/production/node", "aztp_path"),
        ("aztp://astha.ai/service/production/node/chat-service", "aztp_path"),
        ("aztp://astha.ai/Workload/production/node/chat-service", "aztp_path"),
        ("aztp://astha.ai/workload/production/node/chat-service\n", "path_charset"),
        ("aztp://astha.ai/workload/production/node/chat-service/", "path_trailing_slash"),
        ("aztp://astha.ai/workload/production/node/chat//service", "path_empty_segment"),
        ("aztp://astha.ai/workload//node/chat-service", "path_empty_segment"),
        ("aztp://astha.ai/workload/../node/chat-service", "path_dot_segment"),
        ("aztp://astha.ai/workload/production/./chat-service", "path_dot_segment"),
        ("aztp://astha.ai/workload/production/node/chat-service?x=1", "path_charset"),
        ("aztp://astha.ai/workload/production/node/chat-service#f", "path_charset"),
        ("aztp://astha.ai/workload/production/node/chat%20service", "path_charset"),
        ("aztp://astha.ai/workload/production/node/chat service", "path_charset"),
        ("aztp://astha.ai/workload/production/node/x", "aztp_name"),
        ("aztp://astha.ai/workload/production/node/-chat", "aztp_name"),
        ("aztp://astha.ai/workload/production/node/chat-", "aztp_name"),
        ("aztp://astha.ai/workload/production/node/chat_service", "aztp_name"),
        ("aztp://astha.ai/workload/production/node/chat.service", "aztp_name"),
        ("aztp://astha.ai/workload/production/node/" + "a" * 65, "aztp_name"),
        ("aztp://astha.ai/workload/" + "e" * 2040 + "/node/ab", "too_long"),
    ],
)
def test_invalid_aztp_ids(text: str, rule: str) -> None:
    assert not is_valid_aztp_id(text)
    with pytest.raises(InvalidIdError) as excinfo:
        parse_aztp_id(text)
    assert excinfo.value.rule == rule
    assert str(excinfo.value)


def test_aztp_error_messages_say_what_to_do() -> None:
    with pytest.raises(InvalidIdError, match="does not start with 'aztp://'"):
        parse_aztp_id("AZTP://astha.ai/workload/production/node/chat-service")
    with pytest.raises(InvalidIdError, match=r"/workload/\{environment\}/\{method\}/\{name\}"):
        parse_aztp_id("aztp://astha.ai/workload/production/node")
    with pytest.raises(InvalidIdError, match="lowercase letters"):
        parse_aztp_id("aztp://Astha.ai/workload/production/node/chat-service")
    with pytest.raises(InvalidIdError, match="2-64 characters"):
        parse_aztp_id("aztp://astha.ai/workload/production/node/x")


def test_aztp_length_limit_matches_spiffe() -> None:
    prefix = "aztp://astha.ai/workload/"
    suffix = "/node/ab"
    text = prefix + "e" * (2046 - len(prefix) - len(suffix)) + suffix
    assert len(text) == 2046
    aid = parse_aztp_id(text)
    assert len(aid.spiffe_id) == 2048
    assert parse_spiffe_id(aid.spiffe_id) == aid.to_spiffe()
    longer = prefix + "e" * (2047 - len(prefix) - len(suffix)) + suffix
    assert not is_valid_aztp_id(longer)


def test_from_spiffe_rejects_non_workload_paths() -> None:
    for text in (
        "spiffe://astha.ai",
        "spiffe://astha.ai/workload/production/node",
        "spiffe://astha.ai/other/production/node/chat-service",
        "spiffe://astha.ai/workload/production/node/chat_service",
    ):
        with pytest.raises(InvalidIdError):
            AztpId.from_spiffe(text)
    with pytest.raises(InvalidIdError):
        AztpId.from_spiffe("spiffe://astha.ai/workload/production/node/chat-service/")


# --- names and the sanitizer --------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["ab", "chat-service", "a/b", "team/chat-service", "A1", "a-/-b", "a/-b", "x" * 64]
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "2-64 characters"),
        ("a", "2-64 characters"),
        ("x" * 65, "2-64 characters"),
        ("-ab", "start or end"),
        ("ab-", "start or end"),
        ("/ab", "start or end"),
        ("ab/", "start or end"),
        ("a//b", "empty SPIFFE path segment"),
        ("a_b", "limited to letters, numbers"),
        ("a.b", "limited to letters, numbers"),
        ("a b", "limited to letters, numbers"),
        ("ab\n", "limited to letters, numbers"),
        ("café", "limited to letters, numbers"),
    ],
)
def test_invalid_names(name: str, fragment: str) -> None:
    with pytest.raises(InvalidNameError, match=fragment):
        validate_name(name)


def test_name_functions_reject_non_strings() -> None:
    for bad in (None, 1, b"ab", ["ab"]):
        with pytest.raises(InvalidNameError):
            validate_name(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidNameError):
            sanitize_name(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("chat-service", "chat-service"),
        ("langflow-chat-component", "langflow-chat-component"),
        ("My Agent!!", "My-Agent"),
        ("  spaced   out  ", "spaced-out"),
        ("a--b", "a-b"),
        ("a//b", "a/b"),
        ("/a/b/", "a/b"),
        ("Café Agent", "Cafe-Agent"),
        ("ﬁle", "file"),
        ("", "component"),
        ("!!!", "component"),
        ("---///", "component"),
        ("日本語", "component"),
        ("a", "component-a"),
        ("é", "component-e"),
        ("a.b_c", "a-b-c"),
    ],
)
def test_sanitize_examples(raw: str, expected: str) -> None:
    assert sanitize_name(raw) == expected
    validate_name(sanitize_name(raw))


def test_sanitize_keeps_distinct_components_distinct() -> None:
    # The seed's first step (keep only the part before '-') would map both to "langflow".
    assert sanitize_name("langflow-chat-component") != sanitize_name("langflow-router")


def test_sanitize_truncation_never_leaves_bad_end() -> None:
    raw = "a" * 63 + "-b"
    assert sanitize_name(raw) == "a" * 63
    raw = "a" * 63 + "/b"
    assert sanitize_name(raw) == "a" * 63
    raw = "a" + "-/" * 40 + "b"
    out = sanitize_name(raw)
    validate_name(out)
    huge = "x!" * 5000
    out = sanitize_name(huge)
    assert len(out) <= 64
    validate_name(out)
    validate_name(sanitize_name("\ud800\udfff" * 10))  # lone surrogates


def test_sanitized_name_builds_an_id() -> None:
    aid = AztpId.build("astha.ai", sanitize_name("Langflow Chat Component #3"))
    assert str(aid) == "aztp://astha.ai/workload/production/node/Langflow-Chat-Component-3"


# --- properties ---------------------------------------------------------------------------

_td = st.from_regex(r"[a-z0-9._-]{1,40}", fullmatch=True)
_segment = st.from_regex(r"[A-Za-z0-9._-]{1,16}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
_path = st.lists(_segment, max_size=6).map(lambda segs: "".join("/" + s for s in segs))
_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9/-]{0,62}[A-Za-z0-9]", fullmatch=True).filter(
    lambda s: "//" not in s
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_sanitize_always_valid(raw: str) -> None:
    out = sanitize_name(raw)
    assert validate_name(out) == out
    assert sanitize_name(out) == out


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=60, max_size=200))
def test_sanitize_always_valid_long(raw: str) -> None:
    validate_name(sanitize_name(raw))


@settings(max_examples=300, deadline=None)
@given(_name)
def test_valid_names_pass_sanitizer_unchanged(name: str) -> None:
    assert validate_name(name) == name
    if "--" not in name:
        assert sanitize_name(name) == name


@settings(max_examples=300, deadline=None)
@given(_td, _path)
def test_spiffe_round_trip(td: str, path: str) -> None:
    text = f"spiffe://{td}{path}"
    sid = parse_spiffe_id(text)
    assert str(sid) == text
    assert parse_spiffe_id(str(sid)) == sid
    assert SpiffeId(TrustDomain(td), path) == sid
    assert sid.segments == tuple(path.split("/")[1:])


@settings(max_examples=300, deadline=None)
@given(_td, _segment, _segment, _name)
def test_aztp_round_trip(td: str, env: str, method: str, name: str) -> None:
    aid = AztpId.build(td, name, environment=env, method=method)
    assert parse_aztp_id(str(aid)) == aid
    assert AztpId(TrustDomain(td), env, method, name) == aid
    sid = aid.to_spiffe()
    assert str(sid) == aid.spiffe_id
    assert parse_spiffe_id(aid.spiffe_id) == sid
    assert AztpId.from_spiffe(sid) == aid
    assert AztpId.from_spiffe(str(sid)) == aid
    assert str(aid) == "aztp://" + aid.spiffe_id[len("spiffe://") :]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_parsers_never_crash(text: str) -> None:
    for parse in (parse_spiffe_id, parse_aztp_id, TrustDomain.parse):
        try:
            value = parse(text)
        except InvalidIdError as exc:
            assert exc.rule
        else:
            assert str(value) == text or isinstance(value, TrustDomain)
    assert is_valid_aztp_id(text) in (True, False)


@settings(max_examples=300, deadline=None)
@given(_td, _path, st.sampled_from(["\n", " ", "?", "#", "%20", "/", "\r\n"]))
def test_appended_junk_is_rejected(td: str, path: str, junk: str) -> None:
    with pytest.raises(InvalidIdError):
        parse_spiffe_id(f"spiffe://{td}{path}{junk}")


def test_require_aztp_id_is_the_argument_check() -> None:
    from aztp_agents.errors import ValidationError
    from aztp_agents.ids import require_aztp_id

    text = "aztp://example.org/workload/production/node/my-agent"
    parsed = require_aztp_id(text)
    assert isinstance(parsed, AztpId) and str(parsed) == text
    assert require_aztp_id(parsed) is parsed
    with pytest.raises(ValidationError, match="source must be a string"):
        require_aztp_id(42, "source")
    with pytest.raises(InvalidIdError):
        require_aztp_id("spiffe://example.org/workload/production/node/my-agent")


def test_id_types_keep_their_public_module() -> None:
    for cls in (AztpId, SpiffeId, TrustDomain):
        assert cls.__module__ == "aztp_agents.ids"
    aztp_id = parse_aztp_id("aztp://example.org/workload/production/node/my-agent")
    assert pickle.loads(pickle.dumps(aztp_id)) == aztp_id
