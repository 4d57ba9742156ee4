"""Twilio webhooks: inbound SMS / WhatsApp messages and status callbacks, answered with empty TwiML."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute.config import Settings
from crossroute.webhooks import twilio
from crossroute.webhooks.errors import WebhookRejected
from crossroute.webhooks.http import Wiring, base_url, raw_body, refusal

logger = Logger()
app = APIGatewayHttpResolver()
wiring = Wiring(Settings.from_env())


def _accept(callback: twilio.Callback) -> Response[str]:
    request = app.current_event
    event = request.raw_event
    queued = wiring.registry.attempt(
        lambda registry: twilio.accept(
            registry,
            wiring.queue,
            callback,
            raw=raw_body(event),
            content_type=request.headers.get("content-type", ""),
            url=twilio.public_url(
                base_url(wiring.settings, event), event["rawPath"], event.get("rawQueryString", "")
            ),
            signature=request.headers.get("x-twilio-signature"),
        )
    )
    logger.info(
        "webhook queued", extra={"provider": "twilio", "kind": callback.kind, "group": queued.group_id}
    )
    return Response(200, "text/xml", twilio.EMPTY_TWIML)


@app.post("/webhooks/twilio")
def inbound() -> Response[str]:
    return _accept(twilio.INBOUND)


@app.post("/webhooks/twilio/status")
def status() -> Response[str]:
    return _accept(twilio.STATUS)


@app.exception_handler(WebhookRejected)
def refused(exc: WebhookRejected) -> Response[str]:
    return refusal(exc)


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
