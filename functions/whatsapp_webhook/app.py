"""Meta WhatsApp Cloud API webhook: GET is the subscription handshake, POST queues notifications."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute.config import Settings
from crossroute.webhooks import meta
from crossroute.webhooks.errors import WebhookRejected
from crossroute.webhooks.http import Wiring, raw_body, refusal

logger = Logger()
app = APIGatewayHttpResolver()
wiring = Wiring(Settings.from_env())


@app.get("/webhooks/whatsapp")
def handshake() -> Response[str]:
    params = app.current_event.query_string_parameters or {}
    challenge = wiring.registry.attempt(lambda registry: meta.handshake(registry, params))
    return Response(200, "text/plain", challenge)


@app.post("/webhooks/whatsapp")
def notification() -> Response[str]:
    request = app.current_event
    queued = wiring.registry.attempt(
        lambda registry: meta.accept(
            registry,
            wiring.queue,
            raw=raw_body(request.raw_event),
            content_type=request.headers.get("content-type", ""),
            signature=request.headers.get("x-hub-signature-256"),
        )
    )
    logger.info("webhook queued", extra={"provider": "meta", "events": len(queued)})
    return Response(200, "text/plain", "EVENT_RECEIVED")


@app.exception_handler(WebhookRejected)
def refused(exc: WebhookRejected) -> Response[str]:
    return refusal(exc)


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
