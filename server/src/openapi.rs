//! The `/api/openapi.json` document: what utoipa derives from the routes,
//! completed with what every operation can answer besides its own results.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "voxgate",
        description = "Keycloak-authenticated chat with spoken replies."
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError))
)]
pub struct ApiDoc;

/// The finished document, as served.
pub fn document(openapi: &utoipa::openapi::OpenApi) -> String {
    serde_json::to_string_pretty(&complete(serde_json::to_value(openapi).unwrap_or_default()))
        .unwrap_or_default()
}

/// What every operation can answer besides its own results, added to the
/// document so clients and fuzzers see every status the API really sends:
/// malformed input (400), missing or bad credentials (401), a body over the
/// limit (413), text Postgres cannot store (422), a dependency down (503)
/// and our own failure (500). Problems are `application/problem+json`.
fn complete(mut doc: serde_json::Value) -> serde_json::Value {
    refuse_nul_in_strings(&mut doc);
    let problem = serde_json::json!({
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    });
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let has_body = op.contains_key("requestBody");
            let has_params = op
                .get("parameters")
                .is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()));
            let open = path == "/api/version";
            let responses = op
                .entry("responses")
                .or_insert_with(|| serde_json::json!({}));
            let Some(responses) = responses.as_object_mut() else {
                continue;
            };
            // A problem documented as plain JSON is problem+json.
            for response in responses.values_mut() {
                let Some(content) = response.get_mut("content").and_then(|c| c.as_object_mut())
                else {
                    continue;
                };
                if let Some(json) = content.get("application/json")
                    && json.pointer("/schema/$ref").and_then(|r| r.as_str())
                        == Some("#/components/schemas/Problem")
                {
                    content.remove("application/json");
                    content.extend(problem.as_object().cloned().unwrap_or_default());
                }
            }
            let mut generic: Vec<(&str, &str)> = vec![
                ("500", "Internal error"),
                ("503", "A dependency is unavailable"),
            ];
            if !open {
                generic.push(("401", "Not signed in, or an invalid bearer token"));
            }
            if has_body || has_params || method != "get" {
                generic.push(("400", "Malformed input"));
                generic.push(("422", "Input that cannot be accepted"));
            }
            if has_body {
                generic.push(("413", "The body is larger than this server accepts"));
            }
            for (status, description) in generic {
                responses.entry(status).or_insert_with(
                    || serde_json::json!({"description": description, "content": problem}),
                );
            }
        }
    }
    doc
}

/// Every free-text string in the document says what the extractors
/// enforce: no NUL character (Postgres cannot store one; it is a 422).
fn refuse_nul_in_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let string = match map.get("type") {
                Some(serde_json::Value::String(t)) => t == "string",
                Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            let free_text = string
                && !map.contains_key("pattern")
                && !map.contains_key("format")
                && !map.contains_key("enum");
            if free_text {
                map.insert("pattern".into(), serde_json::json!("^[^\\u0000]*$"));
            }
            for v in map.values_mut() {
                refuse_nul_in_strings(v);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(refuse_nul_in_strings),
        _ => {}
    }
}
