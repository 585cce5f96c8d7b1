//! HTTP handlers, one module per concern. Each handler is a small `async fn` returning
//! `Result<_, ApiError>`; shared parsing of query parameters lives in [`params`].

pub mod averages;
pub mod health;
pub mod history;
pub mod ingest;
pub mod params;
