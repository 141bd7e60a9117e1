//! `/openapi.json`: the REST edge described, for people and for tools that test it
//! (schemathesis reads it and tries what it allows).

use serde_json::{json, Value};

/// The OpenAPI 3.1 document of the four endpoints.
pub fn document() -> Value {
    let detail = json!({ "$ref": "#/components/schemas/Refusal" });
    let refusal = |what: &str| json!({ "description": what, "content": { "application/json": { "schema": detail } } });
    let uuid_param = |name: &str| json!([{ "name": name, "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }]);
    let state = json!({ "type": "string", "enum": ["QUEUED", "RUNNING", "COMPLETED", "FAILED"] });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Volley REST edge",
            "version": volley_proto::VERSION,
            "description": "The course FaaS's API on a Volley dispatcher (dispatcher --http). Payloads are base64 text of dill pickles: a function to register, ((args...), {kwargs}) to execute. Results are base64 of the pickled value or exception; \"None\" until the task ends."
        },
        "paths": {
            "/register_function": { "post": {
                "summary": "Register a Python function (base64 of its dill pickle)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["name", "payload"],
                    "properties": {
                        "name": { "type": "string", "minLength": 1, "maxLength": crate::front::MAX_NAME_CHARS, "pattern": "\\S" },
                        "payload": { "type": "string", "minLength": 4, "description": "base64 of dill.dumps(fn)" }
                    }
                } } } },
                "responses": {
                    "200": { "description": "Registered", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["function_id"],
                        "properties": { "function_id": { "type": "string", "format": "uuid" } } } } } },
                    "400": refusal("The payload is not base64 of a pickle, or the name is empty or too long"),
                    "413": refusal("The body is larger than the code limit"),
                    "422": refusal("The body is not JSON with string fields name and payload"),
                    "429": refusal("Too many registrations at once"),
                    "503": refusal("The task store is unavailable")
                }
            } },
            "/execute_function": { "post": {
                "summary": "Run a registered function on base64 of dill's ((args...), {kwargs})",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["function_id", "payload"],
                    "properties": {
                        "function_id": { "type": "string", "format": "uuid" },
                        "payload": { "type": "string", "minLength": 4, "description": "base64 of dill.dumps(((args...), {kwargs}))" }
                    }
                } } } },
                "responses": {
                    "200": { "description": "Queued", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["task_id"],
                        "properties": { "task_id": { "type": "string", "format": "uuid" } } } } } },
                    "400": refusal("The payload is not base64 of a pickle, or the function was not registered here"),
                    "404": refusal("No such function"),
                    "413": refusal("The body is larger than the arguments' limit"),
                    "422": refusal("The body is not JSON with string fields, or function_id is not a UUID"),
                    "429": refusal("The queue is full"),
                    "503": refusal("The task store is unavailable")
                }
            } },
            "/status/{task_id}": { "get": {
                "summary": "A task's status",
                "parameters": uuid_param("task_id"),
                "responses": {
                    "200": { "description": "The task", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["task_id", "status"],
                        "properties": { "task_id": { "type": "string" }, "status": state } } } } },
                    "404": refusal("No such task"),
                    "422": refusal("task_id is not a UUID"),
                    "503": refusal("The task store is unavailable")
                }
            } },
            "/result/{task_id}": { "get": {
                "summary": "A task's status and result",
                "parameters": uuid_param("task_id"),
                "responses": {
                    "200": { "description": "The task; result is \"None\" until it ends", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["task_id", "status", "result"],
                        "properties": { "task_id": { "type": "string" }, "status": state, "result": { "type": "string" } } } } } },
                    "404": refusal("No such task"),
                    "422": refusal("task_id is not a UUID"),
                    "503": refusal("The task store is unavailable")
                }
            } }
        },
        "components": { "schemas": { "Refusal": {
            "type": "object", "required": ["detail"],
            "properties": { "detail": {} }
        } } }
    })
}
