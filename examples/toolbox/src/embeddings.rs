//! Text to an embedding, through an embeddings endpoint over outbound HTTP.
//!
//! Config: `EMBEDDINGS_URL` (a var: where to `POST`), `EMBEDDINGS_API_KEY`
//! (a secret, sent as `Authorization: Bearer …` when set) and
//! `EMBEDDINGS_MODEL` (a var, sent as `"model"` when set). The request is
//! `{"input": "text"[, "model"]}`; the answer is `{"embedding": [...]}` or
//! the OpenAI shape `{"data": [{"embedding": [...]}]}`. The endpoint's host
//! must be in the class's `outbound` list.

use std::time::Duration;

use podhost_sdk::http::{self, Request};
use podhost_sdk::{Error, Result, StatusCode, config};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Whether the class has an embeddings endpoint.
pub fn configured() -> bool {
    config::get("EMBEDDINGS_URL").is_some_and(|url| !url.is_empty())
}

/// The embedding of `text`: a 503 when no endpoint is configured, a 502
/// when it fails or answers in another shape.
pub fn embed(text: &str) -> Result<Vec<f32>> {
    let url = config::get("EMBEDDINGS_URL")
        .filter(|url| !url.is_empty())
        .ok_or_else(|| {
            Error::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no embeddings endpoint: set EMBEDDINGS_URL in the class's vars, or send `embedding`",
            )
            .with_code("embeddings_not_configured")
        })?;
    let mut body = json!({ "input": text });
    if let Some(model) = config::get("EMBEDDINGS_MODEL") {
        body["model"] = model.into();
    }
    let mut request = Request::post(url).json(&body).timeout(TIMEOUT);
    if let Some(key) = config::secret("EMBEDDINGS_API_KEY") {
        request = request.header("authorization", format!("Bearer {}", key.expose()));
    }
    let failed = |message: String| {
        Error::new(StatusCode::BAD_GATEWAY, message).with_code("embeddings_failed")
    };
    let response = http::fetch(request)
        .map_err(|error| failed(format!("the embeddings endpoint: {error}")))?;
    if !response.status().is_success() {
        return Err(failed(format!(
            "the embeddings endpoint answered {}",
            response.status()
        )));
    }
    let answer: Value = response
        .body_json()
        .map_err(|_| failed("the embeddings endpoint did not answer JSON".into()))?;
    let vector = answer
        .get("embedding")
        .or_else(|| answer.pointer("/data/0/embedding"))
        .ok_or_else(|| {
            failed(
                "the embeddings endpoint's answer has no `embedding` nor `data[0].embedding`"
                    .into(),
            )
        })?;
    let vector: Vec<f32> = serde_json::from_value(vector.clone()).map_err(|_| {
        failed("the embeddings endpoint's embedding is not a list of numbers".into())
    })?;
    crate::memories::check_vector(&vector).map_err(|error| {
        failed(format!(
            "the embeddings endpoint's embedding: {}",
            error.message()
        ))
    })?;
    Ok(vector)
}
