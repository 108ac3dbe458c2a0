//! Conformance with the official OpenAI OpenAPI specification
//! (`../shared/fixtures/openai-openapi.yaml`, operation `createChatCompletion`):
//!
//! - every request the OpenAI adapter sends upstream validates against
//!   `CreateChatCompletionRequest`;
//! - the mock upstream answers as the spec says (`CreateChatCompletionResponse`, and
//!   `CreateChatCompletionStreamResponse` for each streamed chunk), so the other e2e tests
//!   exercise the adapter against real OpenAI shapes;
//! - the gateway's own `/v1/chat/completions` answers validate against the same schemas.
//!
//! The spec is OpenAPI 3.1 (JSON Schema 2020-12) but still carries OpenAPI 3.0 constructs that
//! a 2020-12 validator would misread; `normalise` rewrites them to their 2020-12 meaning before
//! the validators are built (see there). OpenAPI-only keywords (`discriminator`, `example`,
//! `x-*`, `deprecated`) are annotations to a 2020-12 validator and are ignored by it.

use crate::support::*;
use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

const KEY: &str = "sk-test-openapi-0123456789abcdef";

/// Each test, gateway start-up included, is bounded by this.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// The component schemas these tests check against.
#[derive(Clone, Copy, Debug)]
enum Schema {
    Request,
    Response,
    StreamChunk,
}

impl Schema {
    fn name(self) -> &'static str {
        match self {
            Schema::Request => "CreateChatCompletionRequest",
            Schema::Response => "CreateChatCompletionResponse",
            Schema::StreamChunk => "CreateChatCompletionStreamResponse",
        }
    }
}

struct Spec {
    request: Validator,
    response: Validator,
    stream_chunk: Validator,
}

impl Spec {
    fn validator(&self, schema: Schema) -> &Validator {
        match schema {
            Schema::Request => &self.request,
            Schema::Response => &self.response,
            Schema::StreamChunk => &self.stream_chunk,
        }
    }
}

fn spec_path() -> std::path::PathBuf {
    repo_root()
        .parent()
        .expect("the repository has a parent")
        .join("shared/fixtures/openai-openapi.yaml")
}

/// Base URI given to the spec document, so that every error carries its absolute keyword
/// location (`<base>#/components/schemas/...`): the JSON pointer of the violated rule in the
/// spec, which reports show as the schema path.
const SPEC_URI: &str = "urn:openai-openapi";

/// The spec, parsed, normalised and compiled once per test binary.
fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = spec_path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading the OpenAI spec {}: {e}", path.display()));
        let YamlJson(mut document) = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "expected an OpenAPI 3.1 document, got openapi = {}",
            document["openapi"]
        );
        normalise(&mut document, false);
        let build = |schema: Schema| {
            // The root document is the whole spec, so every `#/components/schemas/...`
            // reference resolves inside it; the root's own `$ref` selects the schema.
            let mut root = document.clone();
            root.as_object_mut().unwrap().insert(
                "$ref".into(),
                json!(format!("#/components/schemas/{}", schema.name())),
            );
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .with_base_uri(SPEC_URI)
                // `format` is an annotation in 2020-12 unless asserted; the spec says `uri` for
                // image and citation URLs, and we hold the wire to that. Formats the validator
                // does not know (`unixtime`, `int64`, `binary`, ...) stay annotations.
                .should_validate_formats(true)
                .should_ignore_unknown_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("compiling {}: {e}", schema.name()))
        };
        Spec {
            request: build(Schema::Request),
            response: build(Schema::Response),
            stream_chunk: build(Schema::StreamChunk),
        }
    })
}

/// A `serde_json::Value` deserialised from YAML. Not `Value`'s own `Deserialize`, nor
/// `serde_norway::Value`: the spec has integers beyond 64 bits (`seed`'s bounds,
/// ±9223372036854776000) that both reject; here they become floats, as in most JSON parsers.
/// Mapping keys that YAML reads as numbers or booleans become their text.
struct YamlJson(Value);

impl<'de> serde::Deserialize<'de> for YamlJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlJsonVisitor).map(YamlJson)
    }
}

struct YamlJsonVisitor;

impl<'de> serde::de::Visitor<'de> for YamlJsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        self.visit_f64(v as f64)
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        self.visit_f64(v as f64)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} has no JSON form")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(YamlJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((YamlJson(key), YamlJson(value))) = map.next_entry()? {
            let key = match key {
                Value::String(s) => s,
                Value::Number(_) | Value::Bool(_) => key.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "a mapping key that is not a scalar: {other}"
                    )));
                }
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Keywords whose values are data, not schemas: never rewritten.
const DATA_KEYWORDS: &[&str] = &["example", "examples", "default", "enum", "const"];
/// Keywords whose values map names to schemas: their keys are never keywords.
const NAMED_SCHEMAS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "schemas",
    "responses",
];

/// Rewrites the OpenAPI 3.0 constructs the 3.1 spec still uses into their JSON Schema 2020-12
/// meaning (`names` is true when `value` maps names to schemas, such as `properties`):
///
/// - `nullable: true` (3.0 only; a 2020-12 validator ignores it, so it would reject every
///   `null` the spec means to allow, e.g. a stream chunk's `finish_reason`): `null` is added
///   to `type` (and to `enum`, which OpenAPI 3.0 otherwise left closed to it); a schema whose
///   meaning comes from `$ref`/`allOf`/`anyOf`/`oneOf`/`not`/`const` becomes
///   `anyOf: [<schema>, {type: null}]` (so a reported schema path may go through an
///   `anyOf/0` that the YAML does not show). `nullable: false` is dropped.
/// - Boolean `exclusiveMinimum`/`exclusiveMaximum` (draft 4 / OpenAPI 3.0 style, which the
///   2020-12 meta-schema rejects) become the numeric form, taking the bound from
///   `minimum`/`maximum`.
fn normalise(value: &mut Value, names: bool) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| normalise(item, false)),
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if names {
                    normalise(child, false);
                } else if !(DATA_KEYWORDS.contains(&key.as_str()) || key.starts_with("x-")) {
                    normalise(child, NAMED_SCHEMAS.contains(&key.as_str()));
                }
            }
            if names {
                return;
            }
            for (exclusive, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if let Some(Value::Bool(on)) = map.get(exclusive).cloned() {
                    map.remove(exclusive);
                    if on && let Some(limit) = map.remove(bound) {
                        map.insert(exclusive.into(), limit);
                    }
                }
            }
            match map.get("nullable") {
                Some(Value::Bool(true)) => {
                    map.remove("nullable");
                    make_nullable(map);
                }
                Some(Value::Bool(false)) => {
                    map.remove("nullable");
                }
                _ => {}
            }
        }
        _ => {}
    }
}

fn make_nullable(map: &mut Map<String, Value>) {
    let composite = ["$ref", "allOf", "anyOf", "oneOf", "not", "const"]
        .iter()
        .any(|k| map.contains_key(*k));
    if composite {
        let inner = std::mem::take(map);
        map.insert(
            "anyOf".into(),
            json!([Value::Object(inner), {"type": "null"}]),
        );
        return;
    }
    match map.get_mut("type") {
        Some(Value::String(t)) if t != "null" => {
            let t = std::mem::take(t);
            map.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(types)) if !types.contains(&json!("null")) => types.push(json!("null")),
        _ => {}
    }
    if let Some(Value::Array(values)) = map.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// Every violation of `schema` by `instance`, one readable entry each: the instance path, the
/// message, the violated keyword's location in the spec and the path taken through `$ref`s;
/// for `anyOf`/`oneOf`, what each alternative objected to.
fn violations(schema: Schema, instance: &Value) -> Vec<String> {
    spec()
        .validator(schema)
        .iter_errors(instance)
        .map(|error| {
            let mut out = String::new();
            describe(&error, 0, &mut out);
            out
        })
        .collect()
}

fn describe(error: &ValidationError<'_>, depth: usize, out: &mut String) {
    let indent = "    ".repeat(depth);
    let location = error
        .absolute_keyword_location()
        .map(|uri| {
            let uri = uri.as_str();
            uri.split_once('#')
                .map_or(uri, |(_, pointer)| pointer)
                .to_string()
        })
        .unwrap_or_else(|| error.schema_path().to_string());
    let _ = writeln!(
        out,
        "{indent}- instance path `{}`: {}\n{indent}  schema path `{}` (keyword `{}`; evaluated via `{}`)",
        display_pointer(&error.instance_path().to_string()),
        shorten(&error.to_string(), 300),
        location,
        error.kind().keyword(),
        error.evaluation_path(),
    );
    let branches = match error.kind() {
        ValidationErrorKind::AnyOf { context }
        | ValidationErrorKind::OneOfNotValid { context }
        | ValidationErrorKind::OneOfMultipleValid { context } => context,
        _ => return,
    };
    if depth >= 6 {
        let _ = writeln!(out, "{indent}  (alternatives nested too deep to list)");
        return;
    }
    let here = error.instance_path().to_string();
    for (i, branch) in branches.iter().enumerate() {
        if branch.is_empty() {
            let _ = writeln!(out, "{indent}  alternative {i}: matches");
        } else if let Some(tag) = branch.iter().find(|e| is_tag_mismatch(e, &here)) {
            // The alternative is for another `role`/`type` (what OpenAPI's `discriminator`
            // says): one line, so the alternative that was meant stands out.
            let _ = writeln!(
                out,
                "{indent}  alternative {i}: not this one (`{}`: {})",
                tag.instance_path(),
                shorten(&tag.to_string(), 120)
            );
        } else {
            let _ = writeln!(out, "{indent}  alternative {i}:");
            for e in branch {
                describe(e, depth + 1, out);
            }
        }
    }
}

/// An `enum`/`const` violation by a direct member of the object at `parent`: in this spec,
/// the `role` or `type` field that tells the alternatives of a `oneOf` apart.
fn is_tag_mismatch(error: &ValidationError<'_>, parent: &str) -> bool {
    matches!(error.kind().keyword(), "enum" | "const")
        && error
            .instance_path()
            .as_str()
            .strip_prefix(parent)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|member| !member.contains('/'))
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "(root)"
    } else {
        pointer
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

/// `Err` with a full report when `instance` violates `schema`.
fn check(schema: Schema, what: &str, instance: &Value) -> Result<(), String> {
    let found = violations(schema, instance);
    if found.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{what} violates {} ({} violation(s)):\n{}  instance: {}",
        schema.name(),
        found.len(),
        found.concat(),
        shorten(&instance.to_string(), 2000),
    ))
}

/// Panics with every report when any check failed.
fn assert_all_conform(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} OpenAPI conformance failure(s), against {}:\n\n{}",
        failures.len(),
        spec_path().display(),
        failures.join("\n")
    );
}

async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, future)
        .await
        .expect("the test did not finish in time")
}

async fn start_gateway(mock: &MockOpenAi) -> (TestConfig, GatewayProcess) {
    let config = TestConfig::new(
        "",
        OPENAI_PROVIDER,
        &model_entry("gpt-5-mini", "openai", 2.0, 0.85),
    );
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(
        &config,
        &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &mock.base_url)],
    )
    .await;
    (config, gateway)
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
            "additionalProperties": false,
        },
        "strict": true,
    }})
}

/// A 1×1 transparent PNG.
const PNG_DATA_URL: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// A client request, and JSON pointers the adapter's upstream body must have for the case to
/// have exercised what it names (so a field silently dropped cannot pass as conformant).
struct Case {
    name: &'static str,
    body: Value,
    sent: &'static [&'static str],
}

fn request_cases() -> Vec<Case> {
    vec![
        Case {
            name: "system + user with sampling parameters",
            body: json!({
                "model": "gpt-5-mini",
                "messages": [
                    {"role": "system", "content": "Answer in one sentence."},
                    {"role": "user", "content": "Why is the sky blue?"},
                ],
                "temperature": 0.7,
                "top_p": 0.9,
                "max_tokens": 64,
                "stop": ["\n\n", "END"],
                "seed": 42,
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "user": "user-1234",
            }),
            sent: &[
                "/messages/1",
                "/temperature",
                "/top_p",
                "/max_completion_tokens",
                "/stop/1",
                "/seed",
                "/presence_penalty",
                "/frequency_penalty",
                "/user",
            ],
        },
        Case {
            name: "multi-turn with an assistant tool call and a tool result",
            body: json!({
                "model": "gpt-5-mini",
                "messages": [
                    {"role": "system", "content": "You can look up the weather."},
                    {"role": "user", "content": "What is the weather in Paris?"},
                    {"role": "assistant", "content": null, "tool_calls": [{
                        "id": "call_abc123", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                    }]},
                    {"role": "tool", "tool_call_id": "call_abc123",
                     "content": "{\"temperature_c\": 18, \"sky\": \"clear\"}"},
                    {"role": "user", "content": "And should I take a coat?"},
                ],
                "tools": [weather_tool()],
            }),
            sent: &[
                "/messages/2/tool_calls/0/function/arguments",
                "/messages/3/tool_call_id",
                "/messages/4",
                "/tools/0",
            ],
        },
        Case {
            name: "tools with tool_choice \"required\"",
            body: json!({
                "model": "gpt-5-mini",
                "messages": user_message("What is the weather in Oslo?"),
                "tools": [weather_tool()],
                "tool_choice": "required",
            }),
            sent: &["/tools/0/function/parameters", "/tool_choice"],
        },
        Case {
            name: "tools with tool_choice naming a function",
            body: json!({
                "model": "gpt-5-mini",
                "messages": user_message("What is the weather in Rome?"),
                "tools": [weather_tool()],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            }),
            sent: &["/tools/0/function/strict", "/tool_choice/function/name"],
        },
        Case {
            name: "response_format json_object",
            body: json!({
                "model": "gpt-5-mini",
                "messages": [
                    {"role": "system", "content": "Reply with a JSON object."},
                    {"role": "user", "content": "List three colours."},
                ],
                "response_format": {"type": "json_object"},
            }),
            sent: &["/response_format/type"],
        },
        Case {
            name: "response_format json_schema",
            body: json!({
                "model": "gpt-5-mini",
                "messages": user_message("List three colours."),
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": "colours",
                    "strict": true,
                    "schema": {
                        "type": "object",
                        "properties": {"colours": {"type": "array", "items": {"type": "string"}}},
                        "required": ["colours"],
                        "additionalProperties": false,
                    },
                }},
            }),
            sent: &[
                "/response_format/json_schema/name",
                "/response_format/json_schema/schema/properties",
            ],
        },
        Case {
            name: "image_url content part with a data: URL",
            body: json!({
                "model": "gpt-5-mini",
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL, "detail": "low"}},
                ]}],
            }),
            sent: &[
                "/messages/0/content/1/image_url/url",
                "/messages/0/content/1/image_url/detail",
            ],
        },
        Case {
            name: "streamed with stream_options",
            body: json!({
                "model": "gpt-5-mini",
                "messages": user_message("Stream a short greeting."),
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_completion_tokens": 32,
            }),
            sent: &["/stream", "/stream_options/include_usage"],
        },
    ]
}

/// The validators accept what the spec allows and reject what it forbids, with reports that
/// point at the offending field and the rule; so the conformance tests below cannot pass
/// because of a validator that accepts everything.
#[test]
fn the_spec_validators_accept_valid_and_reject_invalid_documents() {
    let request = json!({
        "model": "gpt-5-mini",
        "messages": [{"role": "user", "content": "hi"}],
    });
    assert_eq!(violations(Schema::Request, &request), Vec::<String>::new());
    // `nullable: true` (OpenAPI 3.0 style) admits null after normalisation.
    let mut nulls = request.clone();
    for field in ["stop", "max_completion_tokens", "n", "stream", "seed"] {
        nulls[field] = Value::Null;
    }
    assert_eq!(violations(Schema::Request, &nulls), Vec::<String>::new());

    let rejected = |body: Value, expect: &[&str]| {
        let found = violations(Schema::Request, &body).concat();
        assert!(!found.is_empty(), "{body} was accepted");
        for needle in expect {
            assert!(
                found.contains(needle),
                "{needle:?} not in the report:\n{found}"
            );
        }
    };
    let with = |pointer: &str, value: Value| {
        let mut body = request.clone();
        *body.pointer_mut(pointer).expect(pointer) = value;
        body
    };
    let plus = |field: &str, value: Value| {
        let mut body = request.clone();
        body[field] = value;
        body
    };
    rejected(with("/model", json!(7)), &["instance path `/model`"]);
    rejected(
        json!({"model": "gpt-5-mini"}),
        &[
            "instance path `(root)`",
            "\"messages\" is a required property",
            "schema path `/components/schemas/CreateChatCompletionRequest/allOf/1/required`",
        ],
    );
    rejected(
        with("/messages", json!([])),
        &["instance path `/messages`", "minItems"],
    );
    rejected(
        plus("temperature", json!(3)),
        &[
            "instance path `/temperature`",
            "/components/schemas/ModelResponseProperties/properties/temperature/anyOf",
            "alternative 0:",
            "maximum",
        ],
    );
    rejected(
        with("/messages/0/role", json!("robot")),
        &[
            "instance path `/messages/0`",
            "/components/schemas/ChatCompletionRequestMessage/oneOf",
            "alternative 2: not this one (`/messages/0/role`: \"robot\" is not one of \"user\")",
        ],
    );
    rejected(
        with(
            "/messages/0/content",
            json!([{"type": "image_url", "image_url": {"url": "not a URL"}}]),
        ),
        &[
            "instance path `/messages/0/content/0/image_url/url`",
            "format",
        ],
    );
    rejected(
        plus("tool_choice", json!("sometimes")),
        &["instance path `/tool_choice`"],
    );
    rejected(
        plus("stop", json!(["a", "b", "c", "d", "e"])),
        &["instance path `/stop`"],
    );

    let response = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-5-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                     "message": {"role": "assistant", "content": "hi", "refusal": null}}],
    });
    assert_eq!(
        violations(Schema::Response, &response),
        Vec::<String>::new()
    );
    let mut bad = response.clone();
    bad["choices"][0]["finish_reason"] = json!("done");
    let found = violations(Schema::Response, &bad).concat();
    assert!(
        found.contains("instance path `/choices/0/finish_reason`"),
        "{found}"
    );
    let mut bad = response.clone();
    bad["choices"][0]["message"]
        .as_object_mut()
        .unwrap()
        .remove("refusal");
    let found = violations(Schema::Response, &bad).concat();
    assert!(
        found.contains("\"refusal\" is a required property"),
        "{found}"
    );

    let chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "gpt-5-mini", "usage": null,
        "choices": [{"index": 0, "delta": {"content": "hi"}, "logprobs": null,
                     "finish_reason": null}],
    });
    assert_eq!(
        violations(Schema::StreamChunk, &chunk),
        Vec::<String>::new()
    );
    let mut bad = chunk.clone();
    bad["object"] = json!("chat.completion");
    bad["choices"][0]["delta"]["tool_calls"] = json!([{"id": "call_1"}]);
    let found = violations(Schema::StreamChunk, &bad).concat();
    assert!(found.contains("instance path `/object`"), "{found}");
    assert!(
        found.contains("instance path `/choices/0/delta/tool_calls/0`")
            && found.contains("\"index\" is a required property"),
        "{found}"
    );
}

/// Part 1: every body the adapter sends upstream is a valid `CreateChatCompletionRequest`.
#[tokio::test(flavor = "multi_thread")]
async fn every_request_the_adapter_sends_upstream_validates_against_the_spec() {
    bounded(async {
        spec();
        let mock = MockOpenAi::start(KEY).await;
        let (_config, gateway) = start_gateway(&mock).await;
        let cases = request_cases();
        for case in &cases {
            if case.body["stream"] == true {
                let (status, _, events) = gateway.chat_stream(case.body.clone()).await;
                assert_eq!(status, 200, "{}: {events:?}", case.name);
                assert_eq!(
                    events.last().map(String::as_str),
                    Some("[DONE]"),
                    "{}",
                    case.name
                );
            } else {
                let (status, _, body) = gateway.chat(case.body.clone()).await;
                assert_eq!(status, 200, "{}: {body}", case.name);
            }
        }

        let requests = mock.requests();
        assert_eq!(
            requests.len(),
            cases.len(),
            "one upstream request per case: {requests:#?}"
        );
        let mut failures = Vec::new();
        for (case, sent) in cases.iter().zip(&requests) {
            assert_eq!(sent.path, "/v1/chat/completions", "{}", case.name);
            for pointer in case.sent {
                assert!(
                    sent.body.pointer(pointer).is_some(),
                    "{}: the upstream body lacks {pointer}: {}",
                    case.name,
                    sent.body
                );
            }
            if let Err(report) = check(
                Schema::Request,
                &format!("the upstream request for \"{}\"", case.name),
                &sent.body,
            ) {
                failures.push(report);
            }
        }
        assert_all_conform(failures);
    })
    .await;
}

/// `data:` payloads of an SSE body, in order.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// Checks a stream's `data:` payloads: it ends with `[DONE]`, and every other payload is a
/// JSON chunk valid against `CreateChatCompletionStreamResponse`.
fn check_stream(what: &str, events: &[String], failures: &mut Vec<String>) -> Vec<Value> {
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{what}: {events:?}"
    );
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|_| panic!("{what}: not JSON: {e}")))
        .collect();
    assert!(chunks.len() >= 3, "{what}: too few chunks: {events:?}");
    for (i, chunk) in chunks.iter().enumerate() {
        if let Err(report) = check(Schema::StreamChunk, &format!("{what}, chunk {i}"), chunk) {
            failures.push(report);
        }
    }
    chunks
}

fn has_usage_chunk(chunks: &[Value]) -> bool {
    chunks
        .iter()
        .any(|c| c["choices"] == json!([]) && c["usage"].is_object())
}

fn has_tool_call(body: &Value) -> bool {
    body.pointer("/choices/0/message/tool_calls/0/function/arguments")
        .is_some()
}

/// Part 2: the mock upstream answers in the shapes the spec gives OpenAI's answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_mock_upstream_answers_as_the_spec_says() {
    bounded(async {
        spec();
        let mock = MockOpenAi::start(KEY).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let call = |body: Value| {
            client
                .post(format!("{}/chat/completions", mock.base_url))
                .bearer_auth(KEY)
                .json(&body)
                .send()
        };
        let mut failures = Vec::new();

        for (what, prompt, tools) in [
            ("the mock's text completion", "hello there", false),
            (
                "the mock's tool-call completion",
                "please use the tool",
                true,
            ),
        ] {
            let mut request = json!({"model": "gpt-5-mini", "messages": user_message(prompt)});
            if tools {
                request["tools"] = json!([weather_tool()]);
            }
            let response = call(request).await.expect("the mock answers");
            assert_eq!(response.status(), 200, "{what}");
            let body: Value = response.json().await.expect("a JSON body");
            assert_eq!(has_tool_call(&body), tools, "{what}: {body}");
            if let Err(report) = check(Schema::Response, what, &body) {
                failures.push(report);
            }
        }

        for (what, prompt, include_usage) in [
            ("the mock's text stream", "stream me please", true),
            ("the mock's tool-call stream", "please use the tool", false),
        ] {
            let response = call(json!({
                "model": "gpt-5-mini",
                "messages": user_message(prompt),
                "stream": true,
                "stream_options": {"include_usage": include_usage},
            }))
            .await
            .expect("the mock answers");
            assert_eq!(response.status(), 200, "{what}");
            let text = response.text().await.expect("the stream");
            let chunks = check_stream(what, &sse_data(&text), &mut failures);
            assert_eq!(has_usage_chunk(&chunks), include_usage, "{what}: {text}");
        }
        assert_all_conform(failures);
    })
    .await;
}

/// Part 3: the gateway's own `/v1/chat/completions` answers, plain and streamed, as the spec
/// says OpenAI does (and the upstream requests behind them are valid, as in part 1).
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_answers_as_the_spec_says() {
    bounded(async {
        spec();
        let mock = MockOpenAi::start(KEY).await;
        let (_config, gateway) = start_gateway(&mock).await;
        let mut failures = Vec::new();

        for (what, prompt, tools) in [
            ("the gateway's text completion", "hello there", false),
            (
                "the gateway's tool-call completion",
                "please use the tool",
                true,
            ),
        ] {
            let mut request = json!({"model": "gpt-5-mini", "messages": user_message(prompt)});
            if tools {
                request["tools"] = json!([weather_tool()]);
            }
            let (status, _, body) = gateway.chat(request).await;
            assert_eq!(status, 200, "{what}: {body}");
            assert_eq!(has_tool_call(&body), tools, "{what}: {body}");
            if let Err(report) = check(Schema::Response, what, &body) {
                failures.push(report);
            }
        }

        for (what, prompt, include_usage) in [
            ("the gateway's text stream", "stream me please", true),
            (
                "the gateway's tool-call stream",
                "please use the tool",
                false,
            ),
        ] {
            let mut request = json!({
                "model": "gpt-5-mini",
                "messages": user_message(prompt),
                "stream": true,
                "tools": [weather_tool()],
            });
            if include_usage {
                request["stream_options"] = json!({"include_usage": true});
            }
            let (status, _, events) = gateway.chat_stream(request).await;
            assert_eq!(status, 200, "{what}: {events:?}");
            let chunks = check_stream(what, &events, &mut failures);
            assert_eq!(
                has_usage_chunk(&chunks),
                include_usage,
                "{what}: {events:?}"
            );
        }

        // What the adapter sent upstream for these, too.
        let requests = mock.requests();
        assert_eq!(requests.len(), 4, "{requests:#?}");
        for (i, sent) in requests.iter().enumerate() {
            if let Err(report) = check(
                Schema::Request,
                &format!("upstream request {i}"),
                &sent.body,
            ) {
                failures.push(report);
            }
        }
        assert_all_conform(failures);
    })
    .await;
}
