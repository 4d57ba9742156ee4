"""How one claimed send ended, as it must be recorded against its claim (R8).

A claim (a channel's state ``sending``) is taken before the provider is called and settled after it
answered: released (refused for now, send again later), failed (for good, or outcome unknown), or sent.
Only the attempt that took a claim settles it. When recording fails after the provider answered, the
settlement travels as a follow-up on the send queue (``as_doc`` / ``from_doc``) and is recorded from
there, so what the provider said is not lost and a claim is not left looking like a crash mid-send.
Only when the send queue refuses the follow-up too is the answer lost: the claim then stays ``sending``
and is never sent again (R8 prefers at most once), and the dispatch function logs it as an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from crossroute.channels import Channel, Outbound, Sent, Template
from crossroute.routing.pacing import Pair, PairPace

Result = Literal["released", "failed", "unknown", "sent"]


@dataclass(frozen=True)
class Claim:
    tenant: str
    key: str  # the request's idempotency key
    channel: Channel
    attempt: str  # who took it (one ``Dispatch.send`` / ``fallback`` call)


@dataclass(frozen=True)
class Settlement:
    claim: Claim
    result: Result
    at: datetime
    outcome: str | None = None  # failed / unknown: the provider answer's outcome
    code: int | None = None  # the provider's error code
    sent: Sent | None = None  # sent: what the provider answered
    reason: str | None = None  # sent: the routing reason it went out for (R9, or an R7 fallback)
    outbound: Outbound | None = None  # sent: the message, for the customer's timeline
    customer_id: str | None = None
    pair: Pair | None = None  # sent on WhatsApp: the pair rate to count it against
    pace: PairPace | None = None

    @classmethod
    def released(cls, claim: Claim, at: datetime) -> Settlement:
        return cls(claim, "released", at)

    @classmethod
    def failed(cls, claim: Claim, at: datetime, outcome: str, code: int | None) -> Settlement:
        return cls(claim, "unknown" if outcome == "unknown" else "failed", at, outcome=outcome, code=code)

    @classmethod
    def delivered(
        cls,
        claim: Claim,
        at: datetime,
        sent: Sent,
        reason: str,
        outbound: Outbound,
        customer_id: str | None,
        paced: tuple[Pair, PairPace] | None = None,
    ) -> Settlement:
        pair, pace = paced or (None, None)
        return cls(
            claim,
            "sent",
            at,
            sent=sent,
            reason=reason,
            outbound=outbound,
            customer_id=customer_id,
            pair=pair,
            pace=pace,
        )

    def state(self) -> dict[str, Any]:
        """The channel's send state after this settlement (``SendRecord.sends[channel]``); ``None``
        fields left out. Not for ``released``: a released claim has no state."""
        sent = self.sent
        value = {
            "state": self.result,
            "at": self.at,
            "attempt": self.claim.attempt,
            "provider": sent.provider if sent else None,
            "provider_message_id": sent.message_id if sent else None,
            "outcome": self.outcome,
            "code": str(self.code) if self.code is not None else None,
            "reason": self.reason,
            # sent: the business number it went out from (R10)
            "sender": self.outbound.business if sent and self.outbound else None,
        }
        return {k: v for k, v in value.items() if v is not None}

    def as_doc(self) -> dict[str, Any]:
        """JSON for the send queue. No recipient address: the timeline record needs none."""
        doc: dict[str, Any] = {
            "tenant": self.claim.tenant,
            "idempotency_key": self.claim.key,
            "channel": self.claim.channel,
            "attempt": self.claim.attempt,
            "result": self.result,
            "at": self.at.isoformat(),
            "outcome": self.outcome,
            "code": self.code,
            "reason": self.reason,
            "customer_id": self.customer_id,
        }
        if self.sent:
            doc["sent"] = {"provider": self.sent.provider, "message_id": self.sent.message_id}
        if self.pair and self.pace:
            doc["pace"] = {
                "business": self.pair.business,
                "user": self.pair.user,
                "set_to": self.pace.set_to,
                "add": self.pace.add,
            }
        if self.outbound:
            template = self.outbound.template
            doc["message"] = {
                "business": self.outbound.business,
                "text": self.outbound.text,
                "template": [template.name, template.language, template.category] if template else None,
            }
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Settlement:
        claim = Claim(doc["tenant"], doc["idempotency_key"], doc["channel"], doc["attempt"])
        sent = Sent(doc["sent"]["provider"], doc["sent"]["message_id"]) if doc.get("sent") else None
        message = doc.get("message")
        outbound = None
        if message:
            template = Template(*message["template"]) if message.get("template") else None
            outbound = Outbound(
                claim.channel, message["business"], text=message.get("text"), template=template
            )
        pace = doc.get("pace")
        return cls(
            claim,
            cast(Result, doc["result"]),
            datetime.fromisoformat(doc["at"]),
            outcome=doc.get("outcome"),
            code=doc.get("code"),
            sent=sent,
            reason=doc.get("reason"),
            outbound=outbound,
            customer_id=doc.get("customer_id"),
            pair=Pair(claim.tenant, pace["business"], pace["user"]) if pace else None,
            pace=PairPace(0.0, set_to=pace["set_to"], add=pace["add"]) if pace else None,
        )
