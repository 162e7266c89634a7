"""The gateway's document, made from the services' own (tests/e2e/documents.py): each path
from the service the gateway routes it to, clashing schema names kept apart, and links
between services resolving in the union while a service's own document drops them."""

from typing import Any

from common.openapi import link
from tests.e2e.documents import gateway_document, links, resolves, without_foreign_links


def answer(schema: str, **named: dict[str, Any]) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"description": "ok", "content": content, **({"links": named} if named else {})}


INVOICE = {
    "openapi": "3.1.0",
    "paths": {
        "/api/invoices/{invoice_id}/send": {
            "post": {
                "responses": {
                    "202": answer(
                        "Page",
                        GetEmail=link(
                            "GET", "/api/emails/{email_id}", email_id="$response.body#/send_id"
                        ),
                    )
                }
            }
        },
        "/health/live": {"get": {"responses": {"200": answer("Page")}}},
    },
    "components": {"schemas": {"Page": {"type": "object", "title": "invoices"}}},
}
EMAIL = {
    "openapi": "3.1.0",
    "paths": {
        "/api/emails/{email_id}": {"get": {"responses": {"200": answer("Page")}}},
        "/health/live": {"get": {"responses": {"200": answer("Page")}}},
    },
    "components": {"schemas": {"Page": {"type": "object", "title": "emails"}}},
}


def test_a_link_to_another_service_resolves_in_the_union_only() -> None:
    merged = gateway_document({"invoice": INVOICE, "email": EMAIL})
    [(_, name, described)] = list(links(merged))

    assert name == "GetEmail"
    assert resolves(merged, described["operationRef"])
    assert not resolves(INVOICE, described["operationRef"])
    assert list(links(without_foreign_links(INVOICE))) == []


def test_paths_come_from_the_service_the_gateway_routes_them_to() -> None:
    merged = gateway_document({"invoice": INVOICE, "email": EMAIL})

    assert set(merged["paths"]) == {"/api/invoices/{invoice_id}/send", "/api/emails/{email_id}"}


def test_a_schema_name_two_services_use_differently_is_kept_apart() -> None:
    merged = gateway_document({"invoice": INVOICE, "email": EMAIL})
    schemas = merged["components"]["schemas"]
    email_answer = merged["paths"]["/api/emails/{email_id}"]["get"]["responses"]["200"]

    assert schemas["Page"]["title"] == "invoices"
    assert schemas["email.Page"]["title"] == "emails"
    assert email_answer["content"]["application/json"]["schema"]["$ref"].endswith("/email.Page")
