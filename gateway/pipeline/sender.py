"""Who sent a message: an agent, the active contacts behind its address, or a stranger.

Never sends mail; never commits. An agent found here is only named by the From address:
the rules ask for a proof before an agent's message acts (gateway/rules/confirmation.py).
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.pipeline import known
from gateway.pipeline.parse import ParsedMail
from gateway.pipeline.proof import verdict
from gateway.pipeline.work import Sender, active_agents


def identify(session: Session, settings: Settings, parsed: ParsedMail) -> Sender:
    """The agent or the active contacts behind the From address; nobody when our trusted
    MTA says DMARC failed for it. An agent found here is only named: see `proven`."""
    address = parsed.from_addr
    default = "en" if parsed.content_language.startswith("en") else settings.support.language
    auth = verdict(parsed, settings)
    if address is None or auth.dmarc == "fail":
        return Sender(address, parsed.from_name, None, (), default, auth)
    agent = next((a for a in active_agents(session) if a.email == address), None)
    contacts = known.contacts(session, address)  # read once per batch (known.py)
    language = default
    if agent is None and contacts:
        first = contacts[0]
        language = first.language or first.client.language or default
    name = parsed.from_name or (agent.name if agent else contacts[0].name if contacts else "")
    return Sender(address, name, agent, contacts, language, auth)
