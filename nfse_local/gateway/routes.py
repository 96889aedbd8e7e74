"""The gateway's routes: every operation of api/openapi.yaml, with the function that serves it
and the credentials it needs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from nfse_local.cfn import load_template

ROOT = Path(__file__).resolve().parents[2]
OPENAPI_PATH = ROOT / "api" / "openapi.yaml"
TEMPLATE_PATH = ROOT / "template.yaml"
API_KEY_HEADER = "x-api-key"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
# When the contract names no function for an operation (or the template cannot be read).
OPERATION_HANDLERS: dict[str, str] = {
    "emitInvoice": "functions.emit.app:handler",
    "getInvoice": "functions.get.app:handler",
}
_ARN_REF = re.compile(r"\$\{(\w+)\.Arn\}")
_PATH_PARAM = re.compile(r"\{(\w+)(\+?)\}")

log = logging.getLogger("nfse_local.gateway")


class RouteError(RuntimeError):
    """The contract names an operation the gateway cannot map to a handler."""


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of the contract: method, path template, function, credentials."""

    method: str  # upper case
    resource: str  # the contract's path template, e.g. /invoices/{invoiceId}
    operation_id: str
    function_name: str  # the template's logical id, e.g. EmitFn
    handler_ref: str  # "functions.emit.app:handler"
    requires_api_key: bool
    requires_token: bool
    pattern: re.Pattern[str] = field(compare=False)

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when `path` is this route's, else None."""
        found = self.pattern.fullmatch(path)
        return None if found is None else {k: unquote(v) for k, v in found.groupdict().items()}


def function_handlers(template_path: Path = TEMPLATE_PATH) -> dict[str, str]:
    """Logical id -> "module:attr" for every AWS::Serverless::Function with a local CodeUri."""
    try:
        template = load_template(template_path)
    except (OSError, yaml.YAMLError) as exc:
        log.warning("cannot read %s (%s); using the built-in handler table", template_path, exc)
        return {}
    handlers: dict[str, str] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        code_uri, handler = props.get("CodeUri"), props.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            continue
        package = ".".join(part for part in code_uri.strip("./").split("/") if part)
        module, attr = handler.rsplit(".", 1)
        handlers[logical_id] = f"{package}.{module}:{attr}"
    return handlers


def _integration_function(operation: Mapping[str, Any]) -> str | None:
    uri = (operation.get("x-amazon-apigateway-integration") or {}).get("uri")
    text = json.dumps(uri) if uri is not None else ""
    found = _ARN_REF.search(text)
    return found.group(1) if found else None


def _security_needs(
    security: Sequence[Mapping[str, Any]], schemes: Mapping[str, Any]
) -> tuple[bool, bool]:
    """(api key, Cognito token) required by an OpenAPI security requirement list."""
    api_key = token = False
    # Every scheme named in the first requirement applies (API Gateway takes them together).
    for requirement in security[:1]:
        for name in requirement:
            scheme = schemes.get(name) or {}
            if scheme.get("x-amazon-apigateway-authtype") == "cognito_user_pools":
                token = True
            elif (
                scheme.get("type") == "apiKey" and str(scheme.get("name")).lower() == API_KEY_HEADER
            ):
                api_key = True
    return api_key, token


def _path_pattern(resource: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for param in _PATH_PARAM.finditer(resource):
        parts.append(re.escape(resource[position : param.start()]))
        parts.append(f"(?P<{param.group(1)}>{'.+' if param.group(2) else '[^/]+'})")
        position = param.end()
    parts.append(re.escape(resource[position:]))
    return re.compile("".join(parts))


def load_routes(
    openapi_path: Path = OPENAPI_PATH, template_path: Path = TEMPLATE_PATH
) -> list[Route]:
    """Every operation of the contract, with the handler that serves it."""
    spec = yaml.safe_load(openapi_path.read_text())
    schemes = (spec.get("components") or {}).get("securitySchemes") or {}
    default_security = spec.get("security") or []
    handlers = function_handlers(template_path)
    routes: list[Route] = []
    for resource, item in (spec.get("paths") or {}).items():
        for method in HTTP_METHODS:
            operation = (item or {}).get(method)
            if not isinstance(operation, dict):
                continue
            operation_id = str(operation.get("operationId") or f"{method} {resource}")
            function = _integration_function(operation)
            handler_ref = handlers.get(function or "") or OPERATION_HANDLERS.get(operation_id)
            if handler_ref is None:
                raise RouteError(f"{method.upper()} {resource}: no function serves {operation_id}")
            api_key, token = _security_needs(operation.get("security", default_security), schemes)
            routes.append(
                Route(
                    method=method.upper(),
                    resource=resource,
                    operation_id=operation_id,
                    function_name=function or operation_id,
                    handler_ref=handler_ref,
                    requires_api_key=api_key,
                    requires_token=token,
                    pattern=_path_pattern(resource),
                )
            )
    return routes
