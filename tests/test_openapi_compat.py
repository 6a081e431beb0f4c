"""Tests for platform_assets.kinds.service.openapi_compat: one rule per test, breaking and non-breaking direction."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from platform_assets.kinds.service.openapi_compat import BreakingChange, CompatibilityReport, compare_contracts

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
NULLABLE_STRING: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "null"}]}


# --- Contract builders ---------------------------------------------------------------------------


def contract(
    paths: dict[str, Any], *, schemas: dict[str, Any] | None = None, version: str | None = "1.0.0"
) -> dict[str, Any]:
    info: dict[str, Any] = {"title": "svc"} if version is None else {"title": "svc", "version": version}
    doc: dict[str, Any] = {"openapi": "3.1.0", "info": info, "paths": paths}
    if schemas is not None:
        doc["components"] = {"schemas": schemas}
    return doc


def ok(schema: dict[str, Any], description: str = "Successful Response") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def operation(
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    body_required: bool = True,
    responses: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"responses": responses if responses is not None else {"200": ok(STRING)}}
    if params is not None:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
    return op


def obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def param(name: str, where: str = "query", schema: dict[str, Any] | None = None, required: bool = False):
    return {"name": name, "in": where, "required": required, "schema": schema or STRING}


def response_contract(schema: dict[str, Any], schemas: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET /items answering 200 with ``schema``."""
    return contract({"/items": {"get": operation(responses={"200": ok(schema)})}}, schemas=schemas)


def request_contract(
    body: dict[str, Any] | None, schemas: dict[str, Any] | None = None, body_required: bool = True
) -> dict[str, Any]:
    """POST /items taking ``body`` as its JSON request body."""
    return contract({"/items": {"post": operation(body=body, body_required=body_required)}}, schemas=schemas)


def param_contract(*params: dict[str, Any]) -> dict[str, Any]:
    """GET /items taking ``params``."""
    return contract({"/items": {"get": operation(params=list(params))}})


def breaking(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    return [str(change) for change in compare_contracts(old, new).breaking]


# --- Operations ----------------------------------------------------------------------------------


def test_removed_path_is_breaking():
    old = contract({"/a": {"get": operation()}, "/b": {"get": operation(), "post": operation()}})
    new = contract({"/a": {"get": operation()}})

    report = compare_contracts(old, new)

    assert report.breaking == (
        BreakingChange("GET /b", "operation", "", "removed", "operation GET /b was removed"),
        BreakingChange("POST /b", "operation", "", "removed", "operation POST /b was removed"),
    )
    assert not report.compatible


def test_removed_method_on_remaining_path_is_breaking():
    old = contract({"/items/{id}": {"get": operation(), "delete": operation()}})
    new = contract({"/items/{id}": {"get": operation()}})

    assert breaking(old, new) == ["DELETE /items/{id}: operation removed"]


def test_added_paths_and_methods_are_not_breaking():
    old = contract({"/a": {"get": operation()}})
    new = contract({"/a": {"get": operation(), "post": operation()}, "/b": {"get": operation()}})

    assert compare_contracts(old, new).compatible


# --- Response fields -----------------------------------------------------------------------------


def test_removed_response_field_is_breaking():
    old = response_contract(obj({"id": STRING, "score": NUMBER}, ("id", "score")))
    new = response_contract(obj({"id": STRING}, ("id",)))

    assert compare_contracts(old, new).breaking == (
        BreakingChange(
            "GET /items", "response 200", "score", "removed", "field 'score' was removed from response 200"
        ),
    )


def test_added_response_field_is_not_breaking():
    old = response_contract(obj({"id": STRING}))
    new = response_contract(obj({"id": STRING, "score": NUMBER}, ("score",)))

    assert breaking(old, new) == []


def test_removed_nested_response_field_has_dotted_path():
    old = response_contract(obj({"owner": obj({"name": STRING, "email": STRING})}))
    new = response_contract(obj({"owner": obj({"name": STRING})}))

    assert breaking(old, new) == ["GET /items: response 200 field 'owner.email' removed"]


def test_response_fields_compared_for_every_shared_status_code():
    error = obj({"code": STRING, "message": STRING})
    old = contract({"/items": {"get": operation(responses={"200": ok(STRING), "404": ok(error)})}})
    new = contract(
        {"/items": {"get": operation(responses={"200": ok(STRING), "404": ok(obj({"code": STRING}))})}}
    )

    assert breaking(old, new) == ["GET /items: response 404 field 'message' removed"]


def test_removed_success_response_is_breaking():
    old = contract({"/items": {"post": operation(responses={"200": ok(STRING), "202": ok(STRING)})}})
    new = contract({"/items": {"post": operation(responses={"201": ok(STRING)})}})

    report = compare_contracts(old, new)

    assert [str(change) for change in report.breaking] == [
        "POST /items: response 200 removed",
        "POST /items: response 202 removed",
    ]
    assert report.breaking[0].detail == "response 200 was removed"


def test_removed_error_response_and_added_response_are_not_breaking():
    old = contract({"/items": {"get": operation(responses={"200": ok(STRING), "404": ok(STRING)})}})
    new = contract({"/items": {"get": operation(responses={"200": ok(STRING), "201": ok(STRING)})}})

    assert breaking(old, new) == []


def test_response_replaced_by_component_response_ref_is_resolved():
    old = response_contract(obj({"id": STRING, "name": STRING}))
    new = contract({"/items": {"get": operation(responses={"200": {"$ref": "#/components/responses/Item"}})}})
    new["components"] = {"responses": {"Item": ok(obj({"id": STRING}))}}

    assert breaking(old, new) == ["GET /items: response 200 field 'name' removed"]


# --- Request bodies ------------------------------------------------------------------------------


def test_new_required_request_field_is_breaking():
    old = request_contract(obj({"name": STRING}, ("name",)))
    new = request_contract(obj({"name": STRING, "owner": STRING}, ("name", "owner")))

    assert compare_contracts(old, new).breaking == (
        BreakingChange(
            "POST /items",
            "request body",
            "owner",
            "newly required",
            "field 'owner' is now required in request body",
        ),
    )


def test_optional_request_field_becoming_required_is_breaking():
    old = request_contract(obj({"name": STRING, "tag": STRING}, ("name",)))
    new = request_contract(obj({"name": STRING, "tag": STRING}, ("name", "tag")))

    assert breaking(old, new) == ["POST /items: request body field 'tag' newly required"]


def test_required_without_property_definition_is_still_newly_required():
    old = request_contract(obj({"name": STRING}))
    new = request_contract(obj({"name": STRING}, ("token",)))

    assert breaking(old, new) == ["POST /items: request body field 'token' newly required"]


@pytest.mark.parametrize(
    ("old_body", "new_body"),
    [
        pytest.param(
            obj({"name": STRING}, ("name",)), obj({"name": STRING, "tag": STRING}, ("name",)), id="added"
        ),
        pytest.param(
            obj({"name": STRING, "tag": STRING}, ("name",)), obj({"name": STRING}, ("name",)), id="removed"
        ),
        pytest.param(obj({"name": STRING}, ("name",)), obj({"name": STRING}), id="no-longer-required"),
    ],
)
def test_relaxed_optional_request_fields_are_not_breaking(old_body, new_body):
    assert breaking(request_contract(old_body), request_contract(new_body)) == []


def test_nested_request_field_newly_required():
    old = request_contract(obj({"address": obj({"city": STRING}, ("city",))}))
    new = request_contract(obj({"address": obj({"city": STRING, "zip": STRING}, ("city", "zip"))}))

    assert breaking(old, new) == ["POST /items: request body field 'address.zip' newly required"]


def test_required_fields_inside_new_optional_object_are_not_breaking():
    old = request_contract(obj({"name": STRING}))
    new = request_contract(obj({"name": STRING, "address": obj({"zip": STRING}, ("zip",))}))

    assert breaking(old, new) == []


@pytest.mark.parametrize(
    "old",
    [
        pytest.param(request_contract(None), id="absent"),
        pytest.param(request_contract(obj({"name": STRING}), body_required=False), id="optional"),
    ],
)
def test_request_body_becoming_required_is_breaking(old):
    new = request_contract(obj({"name": STRING}), body_required=True)

    report = compare_contracts(old, new)

    assert [str(change) for change in report.breaking] == ["POST /items: request body newly required"]
    assert report.breaking[0].detail == "the request body is now required"


def test_request_body_becoming_optional_or_added_optional_is_not_breaking():
    required = request_contract(obj({"name": STRING}), body_required=True)
    optional = request_contract(obj({"name": STRING}), body_required=False)

    assert breaking(required, optional) == []
    assert breaking(request_contract(None), optional) == []


def test_request_body_ref_is_resolved():
    old = request_contract(obj({"name": STRING}))
    new = contract({"/items": {"post": operation()}})
    new["paths"]["/items"]["post"]["requestBody"] = {"$ref": "#/components/requestBodies/Item"}
    new["components"] = {
        "requestBodies": {
            "Item": {
                "required": True,
                "content": {"application/json": {"schema": obj({"name": STRING, "kind": STRING}, ("kind",))}},
            }
        }
    }

    assert breaking(old, new) == ["POST /items: request body field 'kind' newly required"]


# --- Parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["query", "header", "cookie"])
def test_new_required_parameter_is_breaking(where):
    old = param_contract()
    new = param_contract(param("tenant", where, required=True))

    report = compare_contracts(old, new)

    assert report.breaking == (
        BreakingChange(
            "GET /items",
            f"parameter 'tenant' ({where})",
            "",
            "newly required",
            f"parameter 'tenant' ({where}) is now required",
        ),
    )


def test_optional_parameter_becoming_required_is_breaking():
    old = param_contract(param("limit", schema=INTEGER))
    new = param_contract(param("limit", schema=INTEGER, required=True))

    assert breaking(old, new) == ["GET /items: parameter 'limit' (query) newly required"]


def test_optional_parameter_changes_are_not_breaking():
    old = param_contract(param("limit", required=True), param("sort"))
    added = param_contract(param("limit", required=True), param("sort"), param("page"))
    relaxed = param_contract(param("limit"))

    assert breaking(old, added) == []
    assert breaking(old, relaxed) == []


def test_path_level_parameters_count_for_every_operation():
    old = contract({"/items": {"get": operation()}})
    new = contract(
        {"/items": {"parameters": [param("X-Tenant", "header", required=True)], "get": operation()}}
    )

    assert breaking(old, new) == ["GET /items: parameter 'X-Tenant' (header) newly required"]


def test_operation_parameter_overrides_path_level_parameter():
    required_at_path = [param("limit", required=True)]
    old = contract({"/items": {"parameters": required_at_path, "get": operation(params=[param("limit")])}})
    new = contract({"/items": {"parameters": required_at_path, "get": operation(params=[param("limit")])}})

    assert breaking(old, new) == []


def test_parameter_ref_is_resolved():
    old = param_contract(param("limit", schema=INTEGER))
    new = param_contract({"$ref": "#/components/parameters/Limit"})
    new["components"] = {"parameters": {"Limit": param("limit", schema=INTEGER, required=True)}}

    assert breaking(old, new) == ["GET /items: parameter 'limit' (query) newly required"]


def test_header_parameter_names_ignore_case():
    old = param_contract(param("X-Tenant", "header", required=True))
    new = param_contract(param("x-tenant", "header", required=True))

    assert breaking(old, new) == []


# --- Type changes --------------------------------------------------------------------------------

DATE_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
UUID: dict[str, Any] = {"type": "string", "format": "uuid"}


@pytest.mark.parametrize(
    ("old_type", "new_type", "is_breaking"),
    [
        pytest.param(STRING, NULLABLE_STRING, True, id="str-to-optional-str"),
        pytest.param(NULLABLE_STRING, STRING, False, id="optional-str-to-str"),
        pytest.param(INTEGER, NUMBER, True, id="int-to-number"),
        pytest.param(NUMBER, INTEGER, False, id="number-to-int"),
        pytest.param(STRING, INTEGER, True, id="str-to-int"),
        pytest.param(STRING, {"type": "string", "nullable": True}, True, id="openapi-3.0-nullable"),
        pytest.param(STRING, {"type": ["string", "null"]}, True, id="type-list"),
        pytest.param(STRING, {"oneOf": [STRING, INTEGER]}, True, id="oneOf"),
        pytest.param(STRING, {"enum": ["a", "b"]}, False, id="string-enum"),
        pytest.param(STRING, {"enum": [1, 2]}, True, id="integer-enum"),
        pytest.param({"const": True}, {"type": "boolean"}, False, id="const-to-boolean"),
        pytest.param(STRING, {}, False, id="to-any"),
        pytest.param({}, INTEGER, False, id="from-any"),
        pytest.param(DATE_TIME, UUID, True, id="date-time-to-uuid"),
        pytest.param(DATE_TIME, STRING, True, id="format-dropped"),
        pytest.param(STRING, DATE_TIME, False, id="format-added"),
        pytest.param(
            STRING, {"type": "string", "description": "new words", "example": "x"}, False, id="docs"
        ),
    ],
)
def test_response_type_change_breaks_when_new_type_can_produce_more(old_type, new_type, is_breaking):
    old = response_contract(obj({"value": old_type}))
    new = response_contract(obj({"value": new_type}))

    expected = ["GET /items: response 200 field 'value' type changed"] if is_breaking else []
    assert breaking(old, new) == expected


@pytest.mark.parametrize(
    ("old_type", "new_type", "is_breaking"),
    [
        pytest.param(INTEGER, NUMBER, False, id="int-to-number"),
        pytest.param(NUMBER, INTEGER, True, id="number-to-int"),
        pytest.param(STRING, NULLABLE_STRING, False, id="str-to-optional-str"),
        pytest.param(NULLABLE_STRING, STRING, True, id="optional-str-to-str"),
        pytest.param(STRING, INTEGER, True, id="str-to-int"),
        pytest.param({"type": "string", "nullable": True}, STRING, True, id="openapi-3.0-nullable"),
        pytest.param({"enum": ["a", "b"]}, STRING, False, id="enum-to-string"),
        pytest.param({}, INTEGER, False, id="from-any"),
        pytest.param(INTEGER, {}, False, id="to-any"),
        pytest.param(DATE_TIME, UUID, True, id="date-time-to-uuid"),
        pytest.param(UUID, DATE_TIME, True, id="uuid-to-date-time"),
        pytest.param(STRING, DATE_TIME, True, id="format-added"),
        pytest.param(DATE_TIME, STRING, False, id="format-dropped"),
    ],
)
def test_request_type_change_breaks_when_new_type_rejects_old_values(old_type, new_type, is_breaking):
    old = request_contract(obj({"value": old_type}))
    new = request_contract(obj({"value": new_type}))

    expected = ["POST /items: request body field 'value' type changed"] if is_breaking else []
    assert breaking(old, new) == expected


@pytest.mark.parametrize(
    ("old_type", "new_type", "is_breaking"),
    [
        pytest.param(INTEGER, STRING, True, id="int-to-str"),
        pytest.param(INTEGER, NUMBER, False, id="int-to-number"),
        pytest.param(NUMBER, INTEGER, True, id="number-to-int"),
    ],
)
def test_parameter_type_change_follows_request_direction(old_type, new_type, is_breaking):
    old = param_contract(param("limit", schema=old_type))
    new = param_contract(param("limit", schema=new_type))

    expected = ["GET /items: parameter 'limit' (query) type changed"] if is_breaking else []
    assert breaking(old, new) == expected


def test_type_change_detail_names_both_types():
    old = response_contract(obj({"score": INTEGER}))
    new = response_contract(obj({"score": NULLABLE_STRING}))

    (change,) = compare_contracts(old, new).breaking

    assert change.change == "type changed"
    assert change.field == "score"
    assert change.detail == "type of field 'score' in response 200 changed from integer to null|string"


def test_whole_response_type_change_has_no_field():
    old = response_contract(array(STRING))
    new = response_contract(obj({"items": array(STRING)}))

    (change,) = compare_contracts(old, new).breaking

    assert str(change) == "GET /items: response 200 type changed"
    assert change.detail == "type of response 200 changed from array to object"


# --- $ref resolution -----------------------------------------------------------------------------


def test_response_ref_into_components_is_resolved():
    old_schemas = {"Page": obj({"items": array(ref("Item"))}), "Item": obj({"id": STRING, "score": NUMBER})}
    new_schemas = {"Page": obj({"items": array(ref("Item"))}), "Item": obj({"id": STRING})}

    old = response_contract(ref("Page"), old_schemas)
    new = response_contract(ref("Page"), new_schemas)

    assert breaking(old, new) == ["GET /items: response 200 field 'items[].score' removed"]


def test_chained_refs_are_resolved():
    schemas = {"Alias": ref("Item"), "Item": obj({"id": STRING, "name": STRING})}
    old = response_contract(ref("Alias"), schemas)
    new = response_contract(ref("Alias"), {**schemas, "Item": obj({"id": STRING})})

    assert breaking(old, new) == ["GET /items: response 200 field 'name' removed"]


def test_renamed_component_with_same_shape_is_not_breaking():
    item = obj({"id": STRING, "score": NUMBER}, ("id",))
    old = response_contract(ref("Item"), {"Item": item})
    new = response_contract(ref("ItemV2"), {"ItemV2": copy.deepcopy(item)})

    assert breaking(old, new) == []


def test_ref_with_sibling_keywords_keeps_target_fields():
    old = response_contract(obj({"owner": ref("User")}), {"User": obj({"name": STRING, "email": STRING})})
    new_owner = {"$ref": "#/components/schemas/User", "description": "who owns it"}
    new = response_contract(obj({"owner": new_owner}), {"User": obj({"name": STRING})})

    assert breaking(old, new) == ["GET /items: response 200 field 'owner.email' removed"]


def test_optional_nested_model_is_compared():
    old = response_contract(
        obj({"address": {"anyOf": [ref("Address"), {"type": "null"}]}}),
        {"Address": obj({"city": STRING, "zip": STRING})},
    )
    new = response_contract(
        obj({"address": {"anyOf": [ref("Address"), {"type": "null"}]}}), {"Address": obj({"city": STRING})}
    )

    assert breaking(old, new) == ["GET /items: response 200 field 'address.zip' removed"]


def test_request_ref_into_components_is_resolved():
    old = request_contract(ref("NewItem"), {"NewItem": obj({"name": STRING}, ("name",))})
    new = request_contract(
        ref("NewItem"), {"NewItem": obj({"name": STRING, "kind": STRING}, ("name", "kind"))}
    )

    assert breaking(old, new) == ["POST /items: request body field 'kind' newly required"]


# --- Arrays --------------------------------------------------------------------------------------


def test_removed_field_in_array_of_objects():
    old = response_contract(obj({"items": array(obj({"id": STRING, "score": NUMBER}))}))
    new = response_contract(obj({"items": array(obj({"id": STRING}))}))

    (change,) = compare_contracts(old, new).breaking

    assert change.field == "items[].score"
    assert change.detail == "field 'items[].score' was removed from response 200"
    assert str(change) == "GET /items: response 200 field 'items[].score' removed"


def test_removed_field_in_nested_arrays_and_top_level_array():
    old = response_contract(array(obj({"grid": array(array(obj({"x": INTEGER, "y": INTEGER})))})))
    new = response_contract(array(obj({"grid": array(array(obj({"x": INTEGER})))})))

    assert breaking(old, new) == ["GET /items: response 200 field '[].grid[][].y' removed"]


def test_array_item_type_change_is_reported_on_items():
    old = response_contract(obj({"tags": array(STRING)}))
    new = response_contract(obj({"tags": array(NULLABLE_STRING)}))

    assert breaking(old, new) == ["GET /items: response 200 field 'tags[]' type changed"]


def test_newly_required_field_in_request_array_of_objects():
    old = request_contract(obj({"lines": array(obj({"sku": STRING}, ("sku",)))}))
    new = request_contract(obj({"lines": array(obj({"sku": STRING, "qty": INTEGER}, ("sku", "qty")))}))

    assert breaking(old, new) == ["POST /items: request body field 'lines[].qty' newly required"]


# --- allOf ---------------------------------------------------------------------------------------


def test_all_of_properties_are_merged_for_responses():
    base_old = obj({"id": STRING, "created": DATE_TIME})
    base_new = obj({"id": STRING})
    item = {"allOf": [ref("Base"), obj({"name": STRING})]}

    old = response_contract(ref("Item"), {"Base": base_old, "Item": item})
    new = response_contract(ref("Item"), {"Base": base_new, "Item": copy.deepcopy(item)})

    assert breaking(old, new) == ["GET /items: response 200 field 'created' removed"]


def test_field_moved_into_all_of_member_is_not_breaking():
    old = response_contract(obj({"id": STRING, "name": STRING}))
    new = response_contract({"allOf": [ref("Base"), obj({"name": STRING})]}, {"Base": obj({"id": STRING})})

    assert breaking(old, new) == []


def test_all_of_required_names_are_merged_for_requests():
    old = request_contract({"allOf": [ref("Base"), obj({"name": STRING})]}, {"Base": obj({"id": STRING})})
    new = request_contract(
        {"allOf": [ref("Base"), obj({"name": STRING}, ("name",))]}, {"Base": obj({"id": STRING}, ("id",))}
    )

    assert breaking(old, new) == [
        "POST /items: request body field 'id' newly required",
        "POST /items: request body field 'name' newly required",
    ]


# --- Recursive schemas ---------------------------------------------------------------------------


def tree(*fields: str) -> dict[str, Any]:
    properties: dict[str, Any] = {name: STRING for name in fields}
    return {"Node": obj({**properties, "children": array(ref("Node"))})}


def test_identical_recursive_schema_terminates_without_changes():
    old = response_contract(ref("Node"), tree("name", "kind"))

    assert breaking(old, copy.deepcopy(old)) == []


def test_field_removed_from_recursive_schema_is_reported_once():
    old = response_contract(ref("Node"), tree("name", "kind"))
    new = response_contract(ref("Node"), tree("name"))

    assert breaking(old, new) == ["GET /items: response 200 field 'kind' removed"]


def test_mutually_recursive_schemas_terminate():
    schemas = {
        "Person": obj({"name": STRING, "employer": ref("Company")}),
        "Company": obj({"title": STRING, "staff": array(ref("Person"))}),
    }
    new_schemas = copy.deepcopy(schemas)
    del new_schemas["Company"]["properties"]["title"]

    old = response_contract(ref("Person"), schemas)
    new = response_contract(ref("Person"), new_schemas)

    assert breaking(old, new) == ["GET /items: response 200 field 'employer.title' removed"]


def test_self_referencing_composition_terminates():
    schemas = {
        "Loop": {"allOf": [ref("Loop"), obj({"id": STRING})]},
        "Either": {"anyOf": [ref("Either"), STRING]},
    }
    old = response_contract(obj({"loop": ref("Loop"), "either": ref("Either")}), schemas)

    assert breaking(old, copy.deepcopy(old)) == []
    assert breaking(request_contract(ref("Loop"), schemas), request_contract(ref("Loop"), schemas)) == []


def test_recursive_request_schema_newly_required_field():
    old = request_contract(ref("Node"), tree("name"))
    new_schemas = tree("name")
    new_schemas["Node"]["required"] = ["name"]
    new = request_contract(ref("Node"), new_schemas)

    assert breaking(old, new) == ["POST /items: request body field 'name' newly required"]


# --- Cosmetic changes ----------------------------------------------------------------------------


def test_descriptions_examples_and_reordering_are_not_breaking():
    old = contract(
        {
            "/a": {"get": operation(params=[param("x"), param("y", required=True)])},
            "/b": {
                "post": operation(
                    body=obj({"p": STRING, "q": INTEGER}, ("p", "q")),
                    responses={"200": ok(obj({"r": STRING, "s": NUMBER}))},
                )
            },
        }
    )
    new = contract(
        {
            "/b": {
                "post": {
                    "summary": "Create a thing",
                    "description": "Now documented.",
                    **operation(
                        body=obj({"q": {**INTEGER, "example": 3}, "p": STRING}, ("q", "p")),
                        responses={
                            "200": ok(obj({"s": NUMBER, "r": {**STRING, "description": "r"}}), "Done")
                        },
                    ),
                }
            },
            "/a": {"get": operation(params=[param("y", required=True), param("x")])},
        }
    )

    assert breaking(old, new) == []


# --- Versions and the report ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old_version", "new_version", "major_bump"),
    [
        ("1.4.0", "2.0.0", True),
        ("1.4.0", "v2.0.0", True),
        ("v1", "V3.1", True),
        ("1.4.0", "1.5.0", False),
        ("2.0.0", "2.0.1", False),
        ("2.0.0", "1.0.0", False),
        ("banana", "2.0.0", False),
        ("1.0.0", "latest", False),
        (None, "2.0.0", False),
    ],
)
def test_major_bump(old_version, new_version, major_bump):
    old = contract({"/a": {"get": operation()}}, version=old_version)
    new = contract({"/a": {"get": operation()}}, version=new_version)

    report = compare_contracts(old, new)

    assert report.major_bump is major_bump
    assert report.old_version == old_version
    assert report.new_version == new_version


def test_nothing_in_prod_is_compatible():
    report = compare_contracts(None, contract({"/a": {"get": operation()}}, version="3.0.0"))

    assert report == CompatibilityReport(breaking=(), old_version=None, new_version="3.0.0", major_bump=False)
    assert report.compatible
    assert report.allowed(allow_breaking_on_major=False)


def _report(breaking_changes: int, major_bump: bool) -> CompatibilityReport:
    change = BreakingChange("GET /a", "operation", "", "removed", "operation GET /a was removed")
    return CompatibilityReport((change,) * breaking_changes, "1.0.0", "2.0.0", major_bump)


@pytest.mark.parametrize(
    ("breaking_changes", "major_bump", "allow", "allowed"),
    [
        (0, False, False, True),
        (0, True, True, True),
        (1, True, True, True),
        (1, True, False, False),
        (1, False, True, False),
        (1, False, False, False),
    ],
)
def test_allowed(breaking_changes, major_bump, allow, allowed):
    report = _report(breaking_changes, major_bump)

    assert report.compatible is (breaking_changes == 0)
    assert report.allowed(allow_breaking_on_major=allow) is allowed


def test_breaking_change_str():
    cases = {
        BreakingChange("GET /x", "operation", "", "removed", "..."): "GET /x: operation removed",
        BreakingChange("GET /x", "response 200", "items[].score", "removed", "..."): (
            "GET /x: response 200 field 'items[].score' removed"
        ),
        BreakingChange("GET /x", "parameter 'limit' (query)", "", "newly required", "..."): (
            "GET /x: parameter 'limit' (query) newly required"
        ),
        BreakingChange("POST /x", "request body", "a.b", "type changed", "..."): (
            "POST /x: request body field 'a.b' type changed"
        ),
    }

    assert {change: str(change) for change in cases} == cases


def test_summary():
    assert (
        _report(0, False).summary()
        == "Contract 2.0.0 vs prod 1.0.0: backward compatible, no breaking changes."
    )
    summary = _report(7, True).summary()

    assert summary.startswith(
        "Contract 2.0.0 vs prod 1.0.0: 7 breaking change(s), with a major version bump: "
    )
    assert summary.count("GET /a: operation removed") == 5
    assert summary.endswith("; and 2 more.")
    assert "\n" not in summary


# --- Real FastAPI output -------------------------------------------------------------------------


def _v1_contract() -> dict[str, Any]:
    """Recommendations service 1.3.0 as FastAPI publishes it."""
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Recommendation(BaseModel):
        item_id: str
        score: float
        reason: str | None = None

    class Page(BaseModel):
        user_id: str
        items: list[Recommendation]
        next_cursor: str | None = None

    app = FastAPI(title="recommendations", version="1.3.0")

    @app.get("/recommendations/{user_id}", response_model=Page)
    def recommendations(user_id: str, limit: int = 10) -> Any:
        raise NotImplementedError

    return app.openapi()


def _v2_contract() -> dict[str, Any]:
    """Version 2.0.0: ``score`` is gone from the items and a ``region`` query parameter is required."""
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Recommendation(BaseModel):
        item_id: str
        reason: str | None = None
        rank: int = 0

    class Page(BaseModel):
        user_id: str
        items: list[Recommendation]
        next_cursor: str | None = None

    app = FastAPI(title="recommendations", version="2.0.0")

    @app.get("/recommendations/{user_id}", response_model=Page)
    def recommendations(user_id: str, region: str, limit: int = 10) -> Any:
        raise NotImplementedError

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app.openapi()


def test_real_fastapi_contracts():
    old, new = _v1_contract(), _v2_contract()

    report = compare_contracts(old, new)

    assert [str(change) for change in report.breaking] == [
        "GET /recommendations/{user_id}: parameter 'region' (query) newly required",
        "GET /recommendations/{user_id}: response 200 field 'items[].score' removed",
    ]
    assert (report.old_version, report.new_version, report.major_bump) == ("1.3.0", "2.0.0", True)
    assert report.allowed(allow_breaking_on_major=True)
    assert not report.allowed(allow_breaking_on_major=False)
    assert compare_contracts(old, _v1_contract()).compatible
