"""One router per resource, included by ``seawall.api.app`` in the order the OpenAPI document lists them."""
