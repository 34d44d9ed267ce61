"""Bad input never reaches TF Serving: each case answers 400 with a message saying what is wrong.

The client points at a closed port (tests/settings.py): had a bad request slipped through
validation, it would answer 503, not 400.
"""

from __future__ import annotations

import json

import pytest

PREDICT = "/api/v1/predict"

# (name, body (str = raw bytes to send), expected words in the error message)
BAD_PREDICT_BODIES = [
    ("non-JSON", "operation=add&a=3&b=4", "not valid JSON"),
    ("truncated JSON", '{"operation": "add", "a": 3', "not valid JSON"),
    ("empty body", "", "empty"),
    ("JSON array", "[1, 2]", "JSON object"),
    ("JSON string", '"add"', "JSON object"),
    ("unknown operation", {"operation": "divide", "a": 3, "b": 4}, "Unknown operation"),
    ("missing operation", {"a": 3, "b": 4}, "operation"),
    ("operation not a string", {"operation": 1, "a": 3, "b": 4}, "operation"),
    ("missing a", {"operation": "add", "b": 4}, "'a' is required"),
    ("null b", {"operation": "add", "a": 3, "b": None}, "'b' is required"),
    ("string operand", {"operation": "add", "a": "3", "b": 4}, "only numbers"),
    ("boolean operand", {"operation": "add", "a": True, "b": 4}, "only numbers"),
    ("object operand", {"operation": "add", "a": {"x": 1}, "b": 4}, "only numbers"),
    ("string in list", {"operation": "add", "a": [1, "x"], "b": [1, 2]}, "only numbers"),
    ("nested list", {"operation": "add", "a": [[1]], "b": [1]}, "only numbers"),
    ("scalar and list", {"operation": "add", "a": 3, "b": [1, 2]}, "both be numbers or both be lists"),
    ("mismatched lengths", {"operation": "add", "a": [1, 2, 3], "b": [1, 2]}, "same length"),
    ("empty lists", {"operation": "add", "a": [], "b": []}, "empty"),
    ("too many elements", {"operation": "add", "a": [1] * 1001, "b": [1] * 1001}, "limit is 1000"),
    ("float32 overflow", {"operation": "multiply", "a": 3.5e38, "b": 1}, "float32"),
    ("float32 overflow in list", {"operation": "add", "a": [1, -1e39], "b": [1, 1]}, "float32"),
    ("huge integer", {"operation": "add", "a": 10**400, "b": 1}, "float32"),
    ("NaN token", '{"operation": "add", "a": NaN, "b": 1}', "NaN is not a number"),
    ("Infinity token", '{"operation": "add", "a": Infinity, "b": 1}', "Infinity is not a number"),
    ("deep nesting", "[" * 100000 + "]" * 100000, "not valid JSON"),
]


def _post(client, body, path: str = PREDICT, content_type: str = "application/json"):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type)


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in BAD_PREDICT_BODIES], ids=[c[0] for c in BAD_PREDICT_BODIES]
)
def test_bad_predict_input_is_a_400_with_a_clear_message(client, body, expected):
    response = _post(client, body)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    message = response.json()["error"]
    assert expected in message
    assert "Traceback" not in message
    assert "\n" not in message


def test_oversized_body_is_a_json_400_not_a_500(client, settings):
    body = {
        "operation": "add",
        "a": [1.0] * 900,
        "b": [1.0] * 900,
        "pad": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
    }
    response = _post(client, body)
    assert response.status_code == 400
    assert "too large" in response.json()["error"]


@pytest.mark.parametrize("path", ["/api/v1/classify", "/api/v1/regress"])
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"a": [1, 2], "b": [1]}, "same length"),
        ({"a": "x", "b": 1}, "only numbers"),
        ("{", "not valid JSON"),
    ],
)
def test_classify_and_regress_validate_like_predict(client, path, body, expected):
    response = _post(client, body, path)
    assert response.status_code == 400
    assert expected in response.json()["error"]


@pytest.mark.parametrize("path", [PREDICT, "/api/v1/classify", "/api/v1/regress"])
def test_api_needs_post(client, path):
    response = client.get(path)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "POST" in response.json()["error"]


# Form: (query, expected words, visible on the page)
BAD_FORM_QUERIES = [
    ({"a": "three", "operation": "add", "b": "4"}, "not a number"),
    ({"a": "", "operation": "add", "b": "4"}, "required"),
    ({"a": "1,2,3", "operation": "add", "b": "1,2"}, "same length"),
    ({"a": "1,,3", "operation": "add", "b": "1,2,3"}, "empty item"),
    ({"a": "1e39", "operation": "add", "b": "1"}, "float32"),
    ({"a": "nan", "operation": "add", "b": "1"}, "not a finite number"),
    ({"a": "3", "operation": "divide", "b": "4"}, "Select a valid choice"),
    ({"a": ",".join(["1"] * 1001), "operation": "add", "b": ",".join(["1"] * 1001)}, "limit is 1000"),
]


@pytest.mark.parametrize(("query", "expected"), BAD_FORM_QUERIES, ids=[q[1] for q in BAD_FORM_QUERIES])
def test_bad_form_input_shows_the_reason(client, query, expected):
    response = client.get("/", query)
    assert response.status_code == 400
    page = response.content.decode()
    assert expected in page
    assert 'id="form-errors"' in page


def test_home_page_without_a_query_is_just_the_form(client):
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<form" in page
    assert 'id="result"' not in page
    assert "/static/calculator_web/style.css" in page


def test_unknown_page_is_a_friendly_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "There is no page at this address" in response.content.decode()


def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.json() == {"error": "There is no page at this address."}
