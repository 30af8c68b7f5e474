"""Verify a Parvis history export offline: the standard library only, plus `cryptography` for checkpoints.

This file imports nothing of Parvis: copy it anywhere and run

    python verify_export.py EXPORT.jsonl [--checkpoint CHECKPOINT.json --public-key BASE64]

It recomputes the hash chain of the export (`hash = sha256(previous_hash || canonical bytes)`, hex, starting from
the `previous_hash` of the header) and, given a signed checkpoint and the deployment's public key (printed by
`parvis audit public-key`), checks its Ed25519 signature and that the export holds the signed hash at its seq.
Exit status: 0 verified, 1 the export is altered or incomplete (the first bad line is named), 2 unusable input.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

SIGNED_FIELDS = ("tenant", "seq", "position", "hash", "at")
INTEGER_COLUMNS = ("seq", "position", "version")


class Bad(Exception):
    """The export does not verify (at a given line, when it is one line's fault)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)


class Unusable(Exception):
    """The input cannot be read as an export or a checkpoint."""


def records(handle: TextIO) -> tuple[dict[str, Any], Iterator[tuple[int, dict[str, Any]]]]:
    """The header and the (line number, record) pairs of a JSON Lines or CSV export."""
    first = handle.readline()
    comment = first.startswith("# ")
    try:
        header = json.loads(first[2:] if comment else first)
    except json.JSONDecodeError:
        raise Unusable("the first line is not an export header") from None
    if not isinstance(header, dict) or header.get("parvis_export") != 1:
        raise Unusable("the first line is not a version 1 export header")
    return header, _csv_records(handle) if comment else _jsonl_records(handle)


def _jsonl_records(handle: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(handle, start=2):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise Bad(number, "not JSON") from None
        if not isinstance(record, dict):
            raise Bad(number, "not a JSON object")
        yield number, record


def _csv_records(handle: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    # The comment line was read already: csv line numbers start after it.
    reader = csv.DictReader(handle)
    for row in reader:
        number = reader.line_num + 1
        record: dict[str, Any] = {k: (v if v != "" else None) for k, v in row.items()}
        try:
            for column in INTEGER_COLUMNS:
                record[column] = int(record[column]) if record.get(column) is not None else None
        except ValueError:
            raise Bad(number, "a number column is not a number") from None
        yield number, record


def verify(header: dict[str, Any], stream: Iterator[tuple[int, dict[str, Any]]]) -> dict[int, tuple[int, str, int]]:
    """Walk the chain; returns (position, hash, line) per seq, for the checkpoint check. Raises Bad."""
    previous_hash = header["previous_hash"]
    previous_position = header["previous_position"]
    expected_seq = header["previous_seq"] + 1
    seen: dict[int, tuple[int, str, int]] = {header["previous_seq"]: (previous_position, previous_hash, 1)}
    last_line = 1
    for number, record in stream:
        last_line = number
        seq = record.get("seq")
        if seq != expected_seq:
            raise Bad(number, f"seq {seq} where {expected_seq} was expected (an entry is missing or out of order)")
        if record.get("previous_hash") != previous_hash:
            raise Bad(number, f"seq {seq}: previous_hash is not the hash of the line before")
        position = record.get("position")
        if not isinstance(position, int) or position <= previous_position:
            raise Bad(number, f"seq {seq}: position {position} does not follow {previous_position}")
        canonical = _canonical(number, record)
        computed = hashlib.sha256(previous_hash.encode() + canonical).hexdigest()
        if computed != record.get("hash"):
            raise Bad(number, f"seq {seq} (position {position}): the hash does not match the event's bytes")
        previous_hash, previous_position = computed, position
        seen[seq] = (position, computed, number)
        expected_seq += 1
    if expected_seq - 1 != header["last_seq"]:
        raise Bad(last_line, f"the export stops at seq {expected_seq - 1}; its header announces {header['last_seq']}")
    return seen


def _canonical(number: int, record: dict[str, Any]) -> bytes:
    """The event's canonical bytes, checked against the readable identity fields of its line."""
    seq = record.get("seq")
    if record.get("canonical") is None:
        raise Bad(number, f"seq {seq} (position {record.get('position')}): the event is missing from the store")
    try:
        canonical = base64.b64decode(record["canonical"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Bad(number, f"seq {seq}: canonical is not base64") from None
    # canonical = originator id, version, topic (one per line), then the stored state.
    parts = canonical.split(b"\n", 3)
    if len(parts) < 4:
        raise Bad(number, f"seq {seq}: canonical bytes are not an event")
    try:
        originator_id, version, topic = (p.decode() for p in parts[:3])
    except UnicodeDecodeError:
        raise Bad(number, f"seq {seq}: canonical bytes are not an event") from None
    readable = {
        "aggregate_id": originator_id,
        "version": int(version) if version.isdigit() else version,
        "type": topic.rsplit(".", 1)[-1],
        "aggregate_type": topic.split(":", 1)[-1].split(".")[0],
    }
    readable.update(_stamped(parts[3]))
    for name, value in readable.items():
        # CSV has no null: an empty cell and a missing value are the same.
        mine = record.get(name) or None
        if isinstance(value, datetime):
            mine = _instant(mine)
        if mine != (value or None):
            raise Bad(number, f"seq {seq}: {name} {record.get(name)!r} is not the event's ({value!s})")
    return canonical


def _stamped(state: bytes) -> dict[str, Any]:
    """Who and when, as the stored event says, to compare with the readable columns.

    `data` is not compared: it is the event as the application reads it today (upcast, secrets redacted).
    """
    try:
        event = json.loads(state)
    except ValueError:
        return {}
    if not isinstance(event, dict) or not isinstance(event.get("meta"), dict):
        return {}
    meta = event["meta"]
    stamped = {
        "actor": meta.get("actor", "system"),
        "actor_role": meta.get("role"),
        **{name: meta.get(name) for name in ("on_behalf_of", "reason", "correlation_id", "causation_id")},
    }
    timestamp = event.get("timestamp")
    if isinstance(timestamp, dict) and isinstance(timestamp.get("_data_"), str):
        stamped["occurred_at"] = _instant(timestamp["_data_"])
    return stamped


def _instant(value: Any) -> datetime | None:
    """An ISO 8601 time as an instant, so that any spelling of it compares equal."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def check_checkpoint(
    path: Path, public_key: str, header: dict[str, Any], seen: dict[int, tuple[int, str, int]]
) -> str:
    """Check a signed checkpoint against the verified export; returns what it covers. Raises Bad or Unusable."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise Unusable("checking a checkpoint needs the `cryptography` package (pip install cryptography)") from None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        signed = {name: document[name] for name in SIGNED_FIELDS}
        signature = base64.b64decode(document["signature"], validate=True)
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise Unusable(f"{path} or the public key cannot be read ({type(exc).__name__})") from None
    payload = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise Bad(None, "the checkpoint's signature does not verify with this public key") from None
    if signed["tenant"] != header["tenant"]:
        raise Bad(None, f"the checkpoint is of tenant {signed['tenant']}, the export of {header['tenant']}")
    entry = seen.get(signed["seq"])
    if entry is None:
        raise Unusable(
            f"the checkpoint (seq {signed['seq']}) is outside the export "
            f"(seq {header['previous_seq']} to {header['last_seq']}); export a window that contains it"
        )
    position, hash_, line = entry
    if (position, hash_) != (signed["position"], signed["hash"]):
        raise Bad(line, f"seq {signed['seq']} differs from the checkpoint signed at {signed['at']}")
    return f"checkpoint of seq {signed['seq']} (signed at {signed['at']}) matches line {line}"


def main(argv: list[str] | None = None) -> int:
    """Verify an export; print the verdict; return the exit status."""
    parser = argparse.ArgumentParser(description="Verify a Parvis history export (JSON Lines or CSV) offline.")
    parser.add_argument("export", type=Path)
    parser.add_argument("--checkpoint", type=Path, help="a signed checkpoint JSON (parvis audit export --with-...)")
    parser.add_argument("--public-key", help="base64 Ed25519 public key (parvis audit public-key)")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) != (args.public_key is None):
        parser.error("--checkpoint and --public-key go together")
    try:
        with args.export.open(encoding="utf-8", newline="") as handle:
            header, stream = records(handle)
            seen = verify(header, stream)
        covered = check_checkpoint(args.checkpoint, args.public_key, header, seen) if args.checkpoint else None
    except Bad as exc:
        print(f"FAILED {args.export}: {exc}")
        return 1
    except (Unusable, OSError, KeyError, TypeError) as exc:
        print(f"cannot verify {args.export}: {exc}", file=sys.stderr)
        return 2
    last = seen[header["last_seq"]][1]
    print(
        f"ok: {header['events']} events of tenant {header['tenant']} "
        f"(seq {header['previous_seq'] + 1} to {header['last_seq']}), chain from {header['previous_hash']} to {last}"
    )
    if covered:
        print(f"ok: {covered}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
