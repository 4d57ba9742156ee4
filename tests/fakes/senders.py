"""``Sender`` (``crossroute.channels``): a provider client answering from a script."""

from __future__ import annotations

from crossroute.channels import Outbound, SendFailed, Sent

# A representative provider error for each failing outcome (``crossroute.channels.Outcome``).
FAILURES: dict[str, dict[str, tuple[int | None, str]]] = {
    "meta": {
        "retry": (130429, "throughput"),
        "fallback": (131026, "undeliverable"),
        "permanent": (132001, "template does not exist"),
        "unknown": (None, "read timeout"),
    },
    "twilio": {
        "retry": (20429, "too many requests"),
        "fallback": (30008, "unknown error"),
        "permanent": (21610, "opted out"),
        "unknown": (None, "read timeout"),
    },
}


class ScriptedSender:
    """Answers each send with the next answer of ``script``, then accepts once the script runs out.

    An answer is ``"sent"``, a ``SendFailed`` (raised as is), or an outcome name (``"retry"``,
    ``"fallback"``, ``"permanent"``, ``"unknown"``: raised as ``FAILURES``' error for this provider).
    Every call is recorded in ``calls``; the n-th call, when accepted, gets the provider message id
    ``wamid.<n>`` (Meta) or ``SM<n>`` (Twilio).
    """

    def __init__(self, provider: str, *script: str | SendFailed) -> None:
        self.provider = provider
        self.script: list[str | SendFailed] = list(script)
        self.calls: list[Outbound] = []

    def send(self, message: Outbound) -> Sent:
        self.calls.append(message)
        answer = self.script.pop(0) if self.script else "sent"
        if isinstance(answer, SendFailed):
            raise answer
        if answer != "sent":
            code, title = FAILURES[self.provider][answer]
            raise SendFailed(self.provider, answer, code, title)  # type: ignore[arg-type]
        prefix = "wamid." if self.provider == "meta" else "SM"
        return Sent(self.provider, f"{prefix}{len(self.calls)}")  # type: ignore[arg-type]
