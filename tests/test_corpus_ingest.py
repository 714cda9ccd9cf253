"""The real-world corpus (../shared/corpus/real-world: bounces, complaints, spam, broken MIME,
an Outlook .msg file) replayed through `gateway ingest FOLDER`: everything is stored, every
message ends with an outcome and none is held (held means a bug), automatic mail is never
answered, and replaying the same folder again changes nothing."""
from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from harness import SUPPORT
from sqlalchemy import Engine, func, select

from gateway.cli import main
from gateway.config import Settings
from gateway.db import session_scope
from gateway.models import Delivery, InboundMessage, OutboundMessage

REQUIRE_ALL = os.environ.get("GATEWAY_TEST_REQUIRE_ALL") == "1"
AUTOMATIC_SENDER = re.compile(r"^(mailer-?daemon|mail-daemon|postmaster)@", re.IGNORECASE)


DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real-world"


def corpus_dir(default: Path = DEFAULT_CORPUS) -> Path:
    """The corpus folder; fails (GATEWAY_TEST_REQUIRE_ALL=1) or skips the test without it."""
    if default.is_dir():
        return default
    configured = os.environ.get("GATEWAY_CORPUS_DIR")
    if configured and Path(configured).is_dir():
        return Path(configured)
    reason = f"real-world corpus not found at {default} (or $GATEWAY_CORPUS_DIR)"
    if REQUIRE_ALL:
        pytest.fail(f"{reason}; GATEWAY_TEST_REQUIRE_ALL=1 forbids skipping it")
    pytest.skip(reason)


def corpus_files(folder: Path) -> list[Path]:
    """Every file `gateway ingest FOLDER` reads: regular files, recursively, hidden ones skipped."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    assert files, f"{folder} holds no file"
    return files


def ingest(tmp_path: Path, settings: Settings, folder: Path) -> Result:
    config = tmp_path / "gateway.toml"
    config.write_text(f"[database]\nurl = {json.dumps(settings.database_url)}\n\n"
                      f"[support]\naddress = {json.dumps(SUPPORT)}\n", encoding="utf-8")
    return CliRunner().invoke(main, ["--config", str(config), "ingest", str(folder)])


def stored(engine: Engine) -> list[tuple[int, str, str, list[str]]]:
    """(id, digest, outcome, reasons) of every stored message, in the order stored."""
    with session_scope(engine) as session:
        return [(i, d, o, list(r)) for i, d, o, r in session.execute(
            select(InboundMessage.id, InboundMessage.digest, InboundMessage.outcome, InboundMessage.reasons)
            .order_by(InboundMessage.id))]


def queued(engine: Engine) -> tuple[int, int, list[str]]:
    """(outbound messages, deliveries, recipients) in the outbox."""
    with session_scope(engine) as session:
        return (session.scalar(select(func.count()).select_from(OutboundMessage)) or 0,
                session.scalar(select(func.count()).select_from(Delivery)) or 0,
                list(session.scalars(select(Delivery.recipient))))


def is_automatic(raw: bytes) -> bool:
    """A delivery or disposition report, or mail that says it was sent by a machine
    (read with Python's own parser, independently of the gateway's)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    auto = str(msg.get("Auto-Submitted", "no")).split(";")[0].split("(")[0].strip().lower()
    return msg.get_content_type() == "multipart/report" or auto not in ("", "no")


def test_every_corpus_message_is_stored_and_handled(loaded, settings, tmp_path) -> None:
    folder = corpus_dir()
    corpus = corpus_files(folder)
    result = ingest(tmp_path, settings, folder)
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"{len(corpus)} message(s) stored and processed" in result.stdout

    rows = stored(loaded)
    assert len(rows) == len(corpus)
    by_digest = {digest: (outcome, reasons) for _id, digest, outcome, reasons in rows}
    names = {hashlib.sha256(p.read_bytes()).hexdigest(): p.relative_to(folder) for p in corpus}
    assert set(by_digest) == set(names)  # every file's exact bytes, once each

    pending = [str(names[d]) for d, (o, _r) in by_digest.items() if o == "pending"]
    held = {str(names[d]): r for d, (o, r) in by_digest.items() if o == "held"}
    assert pending == [] and held == {}, (pending, held)
    assert {o for o, _r in by_digest.values()} <= {"created", "appended", "refused", "ignored"}

    automatic = {str(p.relative_to(folder)) for p in corpus if is_automatic(p.read_bytes())}
    assert automatic, "the corpus holds bounces and complaints"
    answered = {name: by_digest[digest] for digest, name in names.items()
                if str(name) in automatic and by_digest[digest][0] != "ignored"}
    assert answered == {}

    _messages, _deliveries, recipients = queued(loaded)
    assert [r for r in recipients if AUTOMATIC_SENDER.match(r)] == []


def test_replaying_the_corpus_changes_nothing(loaded, settings, tmp_path) -> None:
    folder = corpus_dir()
    corpus = corpus_files(folder)
    assert ingest(tmp_path, settings, folder).exit_code == 0
    first = stored(loaded)
    outbox = queued(loaded)
    result = ingest(tmp_path, settings, folder)
    assert result.exit_code == 0, (result.output, result.exception)
    rows = stored(loaded)
    assert rows[:len(first)] == first
    again = rows[len(first):]
    assert len(again) == len(corpus)
    for _id, _digest, outcome, reasons in again:
        assert outcome == "ignored" and reasons[0].startswith("duplicate of message"), (outcome, reasons)
    assert queued(loaded) == outbox
