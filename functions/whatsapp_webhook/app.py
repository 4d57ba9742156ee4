"""Meta WhatsApp Cloud API webhook: GET is the subscription handshake, POST queues notifications."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute import correlation, privacy
from crossroute.config import Settings
from crossroute.metrics import EmfMetrics
from crossroute.webhooks import meta
from crossroute.webhooks.http import HttpEvent, HttpResponse, Wiring, header, raw_body, response, route

logger = Logger()
metrics = EmfMetrics.for_function()
wiring = Wiring(Settings.from_env(), metrics=metrics)
# The FIFO group ids are keyed hashes of the sender: the masking key is read on the first event.
privacy.configure_from_env()


def handshake(event: HttpEvent) -> HttpResponse:
    params = event.get("queryStringParameters") or {}
    challenge = wiring.attempt(lambda registry: meta.handshake(registry, params))
    return response(200, "text/plain", challenge)


def notification(event: HttpEvent) -> HttpResponse:
    queued = wiring.attempt(
        lambda registry: meta.accept(
            registry,
            wiring.queue,
            raw=raw_body(event),
            content_type=header(event, "content-type") or "",
            signature=header(event, "x-hub-signature-256"),
        )
    )
    logger.info("webhook queued", extra={"provider": "meta", "events": len(queued)})
    return response(200, "text/plain", "EVENT_RECEIVED")


ROUTES = {"GET /webhooks/whatsapp": handshake, "POST /webhooks/whatsapp": notification}


# The correlation id (API Gateway's request id) is on every log line and in every queued body.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: HttpEvent, context: LambdaContext) -> HttpResponse:
    try:
        with correlation.scope((event.get("requestContext") or {}).get("requestId")):
            return route(ROUTES, event, metrics)
    finally:
        metrics.flush()
