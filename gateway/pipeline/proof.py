"""What the receiving MTA says of a sender: the `Authentication-Results` it added.

Only the topmost `Authentication-Results` field counts, and only when its authserv-id is
`support.trusted_authserv_id`: the trusted MTA prepends its own field, so anything below
it was written by someone else (RFC 8601 §5). Pure: no database, never raises.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.config import Settings
from gateway.pipeline.parse import ParsedMail

_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^\s*([a-z0-9-]+)\s*=\s*([a-z0-9]+)", re.IGNORECASE)
_PROPERTY = re.compile(r"([a-z0-9-]+\.[a-z0-9-]+)\s*=\s*\"?([^\s;\"]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """The trusted MTA's word on one message; `known` is False when it said nothing."""
    known: bool = False
    dmarc: str = ""                      # pass, fail, none… of DMARC
    dmarc_domain: str = ""               # its header.from
    dkim_domains: tuple[str, ...] = ()   # header.d of every passing DKIM signature
    spf_domain: str = ""                 # smtp.mailfrom's domain when SPF passed

    def passes_for(self, domain: str, spf: bool = False) -> bool:
        """Whether `domain` is authenticated: DMARC passing for it, or a passing DKIM
        signature of it or of a parent domain (aligned); with `spf`, an aligned SPF pass too."""
        domain = domain.lower()
        if not self.known or not domain:
            return False
        if self.dmarc == "pass" and self.dmarc_domain == domain:
            return True
        candidates = self.dkim_domains + ((self.spf_domain,) if spf and self.spf_domain else ())
        return any(domain == d or domain.endswith("." + d) for d in candidates)


def verdict(parsed: ParsedMail, settings: Settings) -> Verdict:
    """The trusted MTA's verdict on `parsed`, or an unknown one."""
    trusted = settings.support.trusted_authserv_id.strip().lower()
    if not trusted or not parsed.authentication_results:
        return Verdict()
    segments = _COMMENT.sub("", parsed.authentication_results[0]).split(";")
    authserv = segments[0].split()
    if not authserv or authserv[0].lower() != trusted:
        return Verdict()
    dmarc, dmarc_domain, dkim, spf_domain = "", "", [], ""
    for segment in segments[1:]:
        m = _RESULT.match(segment)
        if m is None:
            continue
        method, result = m.group(1).lower(), m.group(2).lower()
        props = {k.lower(): v.lower().rsplit("@", 1)[-1] for k, v in _PROPERTY.findall(segment)}
        if method == "dmarc" and not dmarc:
            dmarc, dmarc_domain = result, props.get("header.from", "")
        elif method == "dkim" and result == "pass" and props.get("header.d"):
            dkim.append(props["header.d"])
        elif method == "spf" and result == "pass":
            spf_domain = props.get("smtp.mailfrom", "")
    return Verdict(True, dmarc, dmarc_domain, tuple(dkim), spf_domain)


def domain_of(address: str | None) -> str:
    return (address or "").rpartition("@")[2].lower()
