"""The local API Gateway: routes from api/openapi.yaml, API key, Cognito JWT, proxy events.

It does what the deployed REST API does in front of the functions, on 127.0.0.1: matches the
path and method against the contract, checks `x-api-key` and the Cognito ID token, enforces
the 10 MB payload limit, builds the REST API (v1) proxy event and invokes the function, each
in its own process with its own role (nfse_local.runtime), as API Gateway invokes Lambda. Its
own refusals use the platform's error body, as the template's GatewayResponses make API
Gateway do:

    413 PAYLOAD_TOO_LARGE  body over 10 MB (checked first, before the body is read)
    404 NOT_FOUND          no such route, or a method the path does not have (API Gateway says
                           MissingAuthenticationToken for both; the template maps it to 404, so
                           the local gateway gives 404 too, with an Allow header when the path
                           exists)
    403 FORBIDDEN          x-api-key missing or wrong
    401 UNAUTHORIZED       no token, or one that fails verification (expired, foreign, forged)
    502 INTERNAL_ERROR     the function raised, timed out or died, or answered with something
                           that is not a proxy response ("malformed Lambda proxy response")

Each function runs one request at a time (as one warm Lambda execution environment would).

The modules: routes (the contract's operations), authorizer (API key, Cognito token), events
(the proxy event), answers (refusals, proxy responses as HTTP), core (Gateway: lifecycle and
dispatch), http_server (bodies within the payload limit).
"""

from nfse_local.gateway.answers import Answer, error_answer, proxy_response_answer
from nfse_local.gateway.core import MAX_PAYLOAD_BYTES, Gateway, Invocable
from nfse_local.gateway.events import Request
from nfse_local.gateway.routes import Route, RouteError, function_handlers, load_routes

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Answer",
    "Gateway",
    "Invocable",
    "Request",
    "Route",
    "RouteError",
    "error_answer",
    "function_handlers",
    "load_routes",
    "proxy_response_answer",
]
