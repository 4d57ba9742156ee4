"""Twilio webhooks: inbound SMS / WhatsApp messages and status callbacks, answered with empty TwiML."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from crossroute import correlation, privacy
from crossroute.config import Settings
from crossroute.metrics import EmfMetrics
from crossroute.webhooks import twilio
from crossroute.webhooks.http import (
    HttpEvent,
    HttpResponse,
    Wiring,
    base_url,
    header,
    raw_body,
    response,
    route,
)

logger = Logger()
metrics = EmfMetrics.for_function()
wiring = Wiring(Settings.from_env(), metrics=metrics)
# The FIFO group ids are keyed hashes of the sender: the masking key is read on the first event.
privacy.configure_from_env()


def _accept(callback: twilio.Callback, event: HttpEvent) -> HttpResponse:
    url = twilio.public_url(
        base_url(wiring.settings, event), event["rawPath"], event.get("rawQueryString", "")
    )
    wiring.attempt(
        lambda registry: twilio.accept(
            registry,
            wiring.queue,
            callback,
            raw=raw_body(event),
            content_type=header(event, "content-type") or "",
            url=url,
            signature=header(event, "x-twilio-signature"),
        )
    )
    # No FIFO group here: it derives from the sender, so it could be traced back to a number.
    logger.info("webhook queued", extra={"provider": "twilio", "kind": callback.kind})
    return response(200, "text/xml", twilio.EMPTY_TWIML)


ROUTES = {
    "POST /webhooks/twilio": lambda event: _accept(twilio.INBOUND, event),
    "POST /webhooks/twilio/status": lambda event: _accept(twilio.STATUS, event),
}


# The correlation id (API Gateway's request id) is on every log line and in every queued body.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: HttpEvent, context: LambdaContext) -> HttpResponse:
    try:
        with correlation.scope((event.get("requestContext") or {}).get("requestId")):
            return route(ROUTES, event, metrics)
    finally:
        metrics.flush()
