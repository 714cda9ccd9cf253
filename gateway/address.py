"""The support address as one value: parsed once, it recognises itself and its token forms.

Customers write to `assistance@editeur.example`; every mail the gateway sends carries a
reply address `assistance+<token>@editeur.example` (gateway/outbound/token.py makes the
token). Whether an address is ours, which token it carries, the reply address for a
token and the domain of the gateway's Message-IDs are all answered here, case-insensitively.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SupportAddress:
    local: str   # lowercase, before the "@"
    domain: str  # lowercase, after the last "@"

    @classmethod
    def parse(cls, address: str) -> SupportAddress:
        local, _, domain = address.strip().lower().rpartition("@")
        return cls(local, domain)

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    def token_of(self, address: str) -> str | None:
        """The token of `local+token@domain` when it is this address's, else None."""
        local, _, domain = address.strip().lower().rpartition("@")
        if domain != self.domain or not local.startswith(self.local + "+"):
            return None
        return local[len(self.local) + 1:] or None

    def matches(self, address: str) -> bool:
        """The address itself or one of its `+token` forms."""
        return address.strip().lower() == str(self) or self.token_of(address) is not None

    def with_token(self, token: str) -> str:
        """The reply address that carries `token`."""
        return f"{self.local}+{token}@{self.domain}"
