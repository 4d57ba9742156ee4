"""Every change the local stack and the in-process account make to moto, applied in one call."""

from __future__ import annotations

from . import moto_dynamodb, moto_redrive, moto_sqs

__all__ = ["patch_moto"]


def patch_moto() -> None:
    """Apply all of them (each is idempotent)."""
    moto_sqs.speed_up()  # moto's SQS recounts a whole queue per message sent: see moto_sqs.py
    moto_dynamodb.speed_up()  # moto copies whole tables per transaction: see moto_dynamodb.py
    moto_redrive.support_message_move_tasks()  # the standard DLQ redrive, which moto lacks
