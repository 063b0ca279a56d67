"""Locations module (mod_locations.asciidoc): the sender interface (our own locations, as CPO) and
the receiver interface (CPO partners push theirs to us, as eMSP).

Extension outside the OCPI namespace (README, Extensions): `GET /ext/locations/nearby` for our own
apps only: it reads the locations of every CPO we hold, so it takes an app token (`ocpi-admin app`),
never a partner's credentials token.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from shared.auth import Caller
from shared.envelope import OcpiResponse
from shared.http import (
    app_client,
    create_app,
    handler_for,
    json_body,
    outcome_response,
    page_params,
    paged_response,
    partner_request,
    wire,
)
from shared.services import geo, locations
from shared.store import get_store

router = APIRouter()
SENDER = "/ocpi/{version}/sender/locations"
RECEIVER = "/ocpi/{version}/receiver/locations/{country_code}/{party_id}/{location_id}"


# ------------------------------------------------------------------ sender interface
@router.get(SENDER)
def list_locations(request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    params = page_params(request)
    items, page = locations.list_own(get_store(), params)
    return paged_response(request, items, params, page, "location")


@router.get(SENDER + "/{location_id}")
def get_location(location_id: str, request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    return OcpiResponse(wire(request, "location", locations.get_own(get_store(), location_id)))


@router.get(SENDER + "/{location_id}/{evse_uid}")
def get_evse(
    location_id: str, evse_uid: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    return OcpiResponse(wire(request, "evse", locations.get_own(get_store(), location_id, evse_uid)))


@router.get(SENDER + "/{location_id}/{evse_uid}/{connector_id}")
def get_connector(
    location_id: str,
    evse_uid: str,
    connector_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    found = locations.get_own(get_store(), location_id, evse_uid, connector_id)
    return OcpiResponse(wire(request, "connector", found))


# ------------------------------------------------------------------ receiver interface
@router.get(RECEIVER)
def rx_get_location(
    country_code: str,
    party_id: str,
    location_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    found = locations.get_received(get_store(), who, country_code, party_id, location_id)
    return OcpiResponse(wire(request, "location", found))


@router.get(RECEIVER + "/{evse_uid}")
def rx_get_evse(
    country_code: str,
    party_id: str,
    location_id: str,
    evse_uid: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    found = locations.get_received(get_store(), who, country_code, party_id, location_id, evse_uid)
    return OcpiResponse(wire(request, "evse", found))


@router.get(RECEIVER + "/{evse_uid}/{connector_id}")
def rx_get_connector(
    country_code: str,
    party_id: str,
    location_id: str,
    evse_uid: str,
    connector_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    found = locations.get_received(
        get_store(), who, country_code, party_id, location_id, evse_uid, connector_id
    )
    return OcpiResponse(wire(request, "connector", found))


@router.put(RECEIVER)
async def rx_put_location(
    country_code: str,
    party_id: str,
    location_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    body = await json_body(request, "location")
    return outcome_response(
        locations.put_location(get_store(), who, country_code, party_id, location_id, body)
    )


@router.put(RECEIVER + "/{evse_uid}")
async def rx_put_evse(
    country_code: str,
    party_id: str,
    location_id: str,
    evse_uid: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    body = await json_body(request, "evse")
    return outcome_response(
        locations.put_evse(get_store(), who, country_code, party_id, location_id, evse_uid, body)
    )


@router.put(RECEIVER + "/{evse_uid}/{connector_id}")
async def rx_put_connector(
    country_code: str,
    party_id: str,
    location_id: str,
    evse_uid: str,
    connector_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    body = await json_body(request, "connector")
    return outcome_response(
        locations.put_connector(
            get_store(), who, country_code, party_id, location_id, evse_uid, connector_id, body
        )
    )


@router.patch(RECEIVER)
async def rx_patch_location(
    country_code: str,
    party_id: str,
    location_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    body = await json_body(request, "location_patch")
    return outcome_response(
        locations.patch_location(get_store(), who, country_code, party_id, location_id, body)
    )


@router.patch(RECEIVER + "/{evse_uid}")
async def rx_patch_evse(
    country_code: str,
    party_id: str,
    location_id: str,
    evse_uid: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    body = await json_body(request, "evse_patch")
    return outcome_response(
        locations.patch_evse(get_store(), who, country_code, party_id, location_id, evse_uid, body)
    )


@router.patch(RECEIVER + "/{evse_uid}/{connector_id}")
async def rx_patch_connector(
    country_code: str,
    party_id: str,
    location_id: str,
    evse_uid: str,
    connector_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    body = await json_body(request, "connector_patch")
    return outcome_response(
        locations.patch_connector(
            get_store(), who, country_code, party_id, location_id, evse_uid, connector_id, body
        )
    )


# ------------------------------------------------------------------ extension: geo query
@router.get("/ext/locations/nearby")
def nearby(request: Request, who: Caller = Depends(app_client)) -> OcpiResponse:
    """Locations within radius_km (default 10) of latitude/longitude, nearest first, at most limit
    (default 50, up to 100): [{"distance_m", "location"}]. Bad parameters -> 2001."""
    q = request.query_params
    return OcpiResponse(
        geo.nearby(
            get_store(),
            q.get("latitude"),
            q.get("longitude"),
            q.get("radius_km", "10"),
            q.get("limit", str(geo.DEFAULT_LIMIT)),
        )
    )


app = create_app("locations", [router])
handler = handler_for(app)
