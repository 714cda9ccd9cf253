"""The signals other helpdesks honour. Mail that says it is automatic or sent to a list
(any Precedence field of bulk, junk, list or auto_reply; an RFC 2369 List-* field even
without List-Id) is ignored entirely. Mail that only asks for no automatic answer
(X-Auto-Response-Suppress: All, AutoReply or OOF) is handled, and agents are told, but its
sender gets no automatic answer."""
from __future__ import annotations

import pytest
from harness import CLAIRE, MATHILDE, mail
from test_rules import deliver, open_case, sent_to

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"


def test_a_second_precedence_field_saying_bulk_is_honoured(loaded, settings) -> None:
    msg = mail(CLAIRE, OPEN)
    msg["Precedence"] = "normal"
    msg["Precedence"] = "bulk"
    assert deliver(loaded, settings, msg)[:2] == ("ignored", ["automatic message: Precedence: bulk"])
    assert sent_to(loaded, CLAIRE) == [] and sent_to(loaded, MATHILDE) == []


def test_precedence_auto_reply_is_automatic_mail(loaded, settings) -> None:
    msg = mail(CLAIRE, OPEN, headers={"Precedence": "Auto_Reply"})
    assert deliver(loaded, settings, msg)[:2] == ("ignored", ["automatic message: Precedence: auto_reply"])


@pytest.mark.parametrize("name", ["List-Unsubscribe", "List-Post", "List-Help", "List-Subscribe", "List-Owner",
                                  "List-Archive"])
def test_rfc_2369_list_fields_without_list_id_are_mailing_list_mail(loaded, settings, name) -> None:
    msg = mail(CLAIRE, OPEN, headers={name: "<mailto:liste@lists.example>"})
    outcome, reasons, _ = deliver(loaded, settings, msg)
    assert (outcome, reasons) == ("ignored", [f"automatic message: mailing-list message ({name.lower()})"])
    assert sent_to(loaded, CLAIRE) == []


@pytest.mark.parametrize("value", ["All", "autoreply", "OOF", "DR, OOF", "NDR,AutoReply"])
def test_x_auto_response_suppress_opens_the_case_without_answering_its_sender(loaded, settings, value) -> None:
    outcome, reasons, number = deliver(loaded, settings, mail(CLAIRE, OPEN, headers={"X-Auto-Response-Suppress": value}))
    assert outcome == "created" and number is not None
    assert reasons[-1].startswith("no automatic answer to the sender: X-Auto-Response-Suppress: ")
    assert sent_to(loaded, CLAIRE) == []
    assert [kind for kind, *_ in sent_to(loaded, MATHILDE)] == ["agent_new_case"]


def test_x_auto_response_suppress_without_answer_values_changes_nothing(loaded, settings) -> None:
    outcome, reasons, _ = deliver(loaded, settings, mail(CLAIRE, OPEN, headers={"X-Auto-Response-Suppress": "DR, NDR, RN"}))
    assert outcome == "created" and not any("no automatic answer" in r for r in reasons)
    assert [kind for kind, *_ in sent_to(loaded, CLAIRE)] == ["case_opened"]


def test_x_auto_response_suppress_keeps_a_refusal_to_itself(loaded, settings) -> None:
    msg = mail(CLAIRE, "[CLIENT C10042] Sans série", headers={"X-Auto-Response-Suppress": "All"})
    outcome, reasons, _ = deliver(loaded, settings, msg)
    assert outcome == "refused" and "no automatic answer to the sender: X-Auto-Response-Suppress: all" in reasons
    assert sent_to(loaded, CLAIRE) == []


def test_x_auto_response_suppress_on_a_reply_still_reaches_the_agents(loaded, settings) -> None:
    number = open_case(loaded, settings)
    msg = mail(CLAIRE, f"[Dossier #{number}] [INFO] Où en est-on ?", headers={"X-Auto-Response-Suppress": "OOF"})
    assert deliver(loaded, settings, msg)[0] == "appended"
    assert [kind for kind, *_ in sent_to(loaded, CLAIRE)] == ["case_opened"]  # no info_ack
    assert [kind for kind, *_ in sent_to(loaded, MATHILDE)][-1] == "agent_info_request"
