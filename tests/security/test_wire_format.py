"""The wire format's contract: a schema version on every payload, unknown fields ignored, newer schemas refused,
and committed JSON Schema files that match the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from bci_stream.messages import (
    SCHEMA_DIR,
    SCHEMA_VERSION,
    TOPICS,
    Drop,
    MarkerInfo,
    ProtocolError,
    SchemaVersionError,
    decode,
    encode,
    json_schemas,
    write_json_schemas,
)


def a_drop() -> Drop:
    return Drop(seq=3, session="abc", sent_at=1.5, marker=MarkerInfo(value="stim/a/1", time=2.0), reason="nan")


def test_every_payload_carries_the_schema_version() -> None:
    topic, payload = encode(a_drop())
    assert topic == b"drop" and json.loads(payload)["schema"] == SCHEMA_VERSION == 1
    assert decode([topic, payload]).schema_ == 1
    for name, schema in json_schemas().items():
        assert "schema" in schema["required"] and schema["properties"]["topic"]["const"] == name


def test_clients_ignore_fields_a_newer_daemon_adds() -> None:
    topic, payload = encode(a_drop())
    data = json.loads(payload)
    data["confidence_interval"] = [0.1, 0.9]  # new top-level field
    data["marker"]["stream"] = "Markers"  # new nested field
    msg = decode([topic, json.dumps(data).encode()])
    assert msg == a_drop()


def test_clients_refuse_a_newer_schema_with_a_clear_message() -> None:
    topic, payload = encode(a_drop())
    data = json.loads(payload) | {"schema": SCHEMA_VERSION + 1}
    with pytest.raises(SchemaVersionError, match=r"'drop' message has wire schema 2, newer than the 1.*upgrade"):
        decode([topic, json.dumps(data).encode()])
    assert issubclass(SchemaVersionError, ProtocolError)


def test_the_daemon_builds_its_own_messages_strictly() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Drop(seq=0, session="s", sent_at=0.0, marker=MarkerInfo(value="x", time=0.0), reason="r", typo=1)  # type: ignore[call-arg]


def test_committed_json_schemas_are_current(tmp_path: Path) -> None:
    """Fails when a message model changed without `bci-stream schema` (then commit bci_stream/schemas/)."""
    written = write_json_schemas(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{t}.schema.json" for t in TOPICS)
    committed = sorted(p.name for p in SCHEMA_DIR.glob("*.json"))
    assert committed == sorted(p.name for p in written), "stale files in bci_stream/schemas/"
    for fresh in written:
        old = SCHEMA_DIR / fresh.name
        assert old.read_text() == fresh.read_text(), f"{old} is stale: run `bci-stream schema --out {SCHEMA_DIR}`"


def test_json_schema_lets_daemons_add_fields() -> None:
    text = json.dumps(json_schemas())
    assert '"additionalProperties": false' not in text
