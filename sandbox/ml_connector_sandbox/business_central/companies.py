"""The company and its reference data in API v2.0: ``companies``, ``companyInformation``, ``shipmentMethods``,
``items`` (read-only, paged like every collection)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ml_connector_sandbox.business_central.entities import EntityBuilder
from ml_connector_sandbox.business_central.errors import COMPANY_NOT_FOUND, odata_error, record_not_found
from ml_connector_sandbox.business_central.odata import (
    FilterField,
    add_route,
    collection,
    context_root,
    entity_key,
    json_response,
    only_get,
    select_option,
)
from ml_connector_sandbox.business_central.state import BusinessCentralState

ITEM_FILTER_FIELDS: dict[str, FilterField] = {
    "id": FilterField("guid"), "number": FilterField("string"), "displayName": FilterField("string"),
    "lastModifiedDateTime": FilterField("datetime"),
}
SHIPMENT_METHOD_FILTER_FIELDS: dict[str, FilterField] = {
    "id": FilterField("guid"), "code": FilterField("string"), "displayName": FilterField("string"),
    "lastModifiedDateTime": FilterField("datetime"),
}
COMPANY_FILTER_FIELDS: dict[str, FilterField] = {
    "id": FilterField("guid"), "name": FilterField("string"), "displayName": FilterField("string"),
}
#: ``companies({id})`` of the standard API.
COMPANY = "/v2.0/companies({company})"


def check_company(state: BusinessCentralState, raw_key: str) -> str:
    """The normalised company key, or BC's 404 when it is not the sandbox's company."""
    key = entity_key(raw_key)
    if key != state.company["id"].lower():
        raise odata_error(404, COMPANY_NOT_FOUND, f"Cannot process the request because the company with id "
                                                  f"'{key}' cannot be found.")
    return key


def router(state: BusinessCentralState, build: EntityBuilder) -> APIRouter:
    """The routes of this module, relative to ``/v2.0/{tenant}/{environment}/api``."""
    api = APIRouter(tags=["companies"])

    async def companies(request: Request) -> Response:
        only_get(request)
        with state.lock:
            return collection(request, state, f"{context_root(request, 'v2.0')}#companies", [build.company()],
                              COMPANY_FILTER_FIELDS, "companies", sort_key="name")

    async def company(company: str, request: Request) -> Response:
        only_get(request)
        with state.lock:
            check_company(state, company)
            return json_response({"@odata.context": f"{context_root(request, 'v2.0')}#companies/$entity",
                                  **build.company()})

    async def company_information(company: str, request: Request) -> Response:
        key = request.path_params.get("key")
        with state.lock:
            company_key = check_company(state, company)
            only_get(request)
            context = f"{context_root(request, 'v2.0')}#companies({company_key})/companyInformation"
            info = build.company_information()
            if key is None:
                return json_response({"@odata.context": context, "value": [info]})
            if entity_key(key) != info["id"]:
                raise record_not_found("Company Information", entity_key(key))
            return json_response({"@odata.context": f"{context}/$entity", **info})

    def reference_data(entity_set: str, entity: str, fields: dict[str, FilterField], sort_key: str):
        async def serve(company: str, request: Request) -> Response:
            key = request.path_params.get("key")
            with state.lock:
                company_key = check_company(state, company)
                only_get(request)
                context = f"{context_root(request, 'v2.0')}#companies({company_key})/{entity_set}"
                if entity_set == "shipmentMethods":
                    docs = [build.shipment_method(m) for m in state.shipment_methods.values()]
                else:
                    docs = [build.item(i) for i in state.items.values()]
                if key is not None:
                    wanted = entity_key(key)
                    doc = next((d for d in docs if d["id"] == wanted), None)
                    if doc is None:
                        raise record_not_found(entity, wanted)
                    return json_response({"@odata.context": f"{context}/$entity", **doc})
                return collection(request, state, context, docs, fields, entity, sort_key=sort_key,
                                  select=select_option(request.query_params.get("$select")))
        serve.__name__ = entity_set
        add_route(api, f"{COMPANY}/{entity_set}", serve)
        add_route(api, f"{COMPANY}/{entity_set}({{key}})", serve)

    add_route(api, "/v2.0/companies", companies)
    add_route(api, COMPANY, company)
    add_route(api, f"{COMPANY}/companyInformation", company_information)
    add_route(api, f"{COMPANY}/companyInformation({{key}})", company_information)
    reference_data("shipmentMethods", "shipmentMethod", SHIPMENT_METHOD_FILTER_FIELDS, "code")
    reference_data("items", "item", ITEM_FILTER_FIELDS, "number")
    return api
