"""Property-based tests of everything that parses outside input: config files, wire frames, regexes in configs.

Each property says what a user sees for *any* input: a :class:`ConfigError` naming the file and key, or a
:class:`ProtocolError`, and never another exception. Example counts are modest so the suite stays fast.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bci_stream.cli import main
from bci_stream.config import DaemonConfig, load_config
from bci_stream.errors import ConfigError
from bci_stream.messages import TOPICS, Drop, MarkerInfo, ProtocolError, decode, encode

pytestmark = pytest.mark.filterwarnings("ignore:Possible:FutureWarning")  # re's hint on odd character sets

FAST = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------- TOML generation
SECTIONS = {name: list(field.annotation.model_fields) for name, field in DaemonConfig.model_fields.items()}  # type: ignore[union-attr]
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=6,
)


def section_body(name: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from(SECTIONS[name]) | text if name in SECTIONS else text
    return st.dictionaries(keys, values, max_size=4)


documents = st.dictionaries(st.sampled_from(list(SECTIONS)) | text, values, max_size=3).flatmap(
    lambda top: st.fixed_dictionaries({k: section_body(k) if k in SECTIONS else st.just(v) for k, v in top.items()})
)


def toml_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML wants DEL escaped, JSON does not


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(doc: dict[str, Any]) -> str:
    plain = [f"{toml_string(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [
        f"[{toml_string(k)}]\n" + "".join(f"{toml_string(kk)} = {toml_value(vv)}\n" for kk, vv in v.items())
        for k, v in doc.items()
        if isinstance(v, dict)
    ]
    return "\n".join(plain) + "\n" + "\n".join(tables)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "daemon.toml"


def assert_config_error_or_config(path: Path) -> None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert str(path) in message, message
        assert "not valid TOML" in message or re.search(r"\[[^\]]+\]|top level", message), message
    else:
        assert isinstance(config, DaemonConfig)


@FAST
@given(doc=documents)
@example(doc={"publish": {"endpoint": "udp://x"}, "runtime": {"wait": "soon"}})
@example(doc={"markers": {"events": "a{4294967296}"}})
@example(doc={"model": {"max_batch": 2**63 - 1, "path": {"nested": [1]}}})
def test_random_config_is_loaded_or_refused_naming_file_and_key(config_file: Path, doc: dict[str, Any]) -> None:
    config_file.write_text(to_toml(doc), encoding="utf-8")
    assert_config_error_or_config(config_file)


@FAST
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@example(raw=b"\xff\xfe[eeg]")
@example(raw=b"[eeg]\nname = 'a'\n[eeg]\n")
def test_random_bytes_as_config_give_a_config_error(config_file: Path, raw: bytes) -> None:
    config_file.write_bytes(raw)
    assert_config_error_or_config(config_file)


# --------------------------------------------------------------------------------------------- wire frames
def valid_payload() -> dict[str, Any]:
    msg = Drop(seq=1, session="s", sent_at=1.0, marker=MarkerInfo(value="stim/a", time=1.0), reason="nan")
    return json.loads(encode(msg)[1])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@FAST
@given(frames=st.lists(st.binary(max_size=64), max_size=4))
@example(frames=[b"drop", b"[" * 100_000])
@example(frames=[b"drop", b"\xff\xfe\x00"])
@example(frames=[b"drop", b"1" * 5000])
def test_random_frames_give_a_protocol_error(frames: list[bytes]) -> None:
    with contextlib.suppress(ProtocolError):  # any other exception fails the test
        decode(frames)


@FAST
@given(topic=st.sampled_from(TOPICS), changes=st.dictionaries(st.sampled_from([*valid_payload(), "x"]), json_values))
def test_damaged_payloads_give_a_protocol_error(topic: str, changes: dict[str, Any]) -> None:
    payload = valid_payload() | {"topic": topic} | changes
    try:
        raw = json.dumps(payload, allow_nan=True).encode()
    except (ValueError, RecursionError):
        return
    try:
        msg = decode([topic.encode(), raw])
    except ProtocolError:
        return
    assert msg.topic == topic


# --------------------------------------------------------------------------------------------- regexes
regex_like = st.text(st.sampled_from("()[]{}?*+|\\^$.-ab09<>P=:!,/"), max_size=16)


def compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except Exception:  # the question is only whether Python accepts it
        return False
    return True


@FAST
@given(pattern=regex_like)
@example(pattern="a{4294967296}")
@example(pattern="stim/(")
def test_events_regex_is_accepted_exactly_when_it_compiles(pattern: str) -> None:
    try:
        config = load_config(None, {"markers": {"events": pattern}})
    except ConfigError as exc:
        assert not compiles(pattern)
        assert "[markers] events" in str(exc) and "not a valid regular expression" in str(exc)
    else:
        assert compiles(pattern) and config.markers.events == pattern


@FAST
@given(body=regex_like)
@example(body="(?P<label>a")
def test_label_regex_needs_to_compile_and_name_a_label_group(body: str) -> None:
    for pattern in (body, f"(?P<label>{body})"):
        try:
            config = load_config(None, {"markers": {"label": pattern}})
        except ConfigError as exc:
            assert "[markers] label" in str(exc)
            assert not compiles(pattern) or "label" not in re.compile(pattern).groupindex
        else:
            assert not config.markers.label or "label" in re.compile(config.markers.label).groupindex  # "": none


def test_run_refuses_an_invalid_regex_at_start_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[markers]\nevents = "stim/("\n')
    assert main(["run", "--config", str(bad), "--wait", "0"]) == 2  # refused before anything starts
    err = capsys.readouterr().err
    assert str(bad) in err and "[markers] events" in err and "regular expression" in err
