//! The container healthcheck (`sensor-api healthcheck`, `sensor-dashboard healthcheck`):
//! the image has no curl, so the binaries probe themselves.

use std::time::Duration;

/// Why a healthcheck failed (the command then exits 1 with this message on stderr).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// No answer (refused, timed out, bad URL).
    #[error("GET {url}: {source}")]
    Request {
        /// The URL probed.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// An answer other than 2xx.
    #[error("GET {url} answered {status}")]
    Status {
        /// The URL probed.
        url: String,
        /// The status received.
        status: reqwest::StatusCode,
    },
}

/// `GET url` within `timeout`; `Ok` on a 2xx answer, after printing `<url>: <status>` on
/// stdout.
pub async fn check(url: &str, timeout: Duration) -> Result<(), HealthError> {
    let request = |source| HealthError::Request {
        url: url.to_string(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(request)?;
    let response = client.get(url).send().await.map_err(request)?;
    let status = response.status();
    if !status.is_success() {
        return Err(HealthError::Status {
            url: url.to_string(),
            status,
        });
    }
    println!("{url}: {status}");
    Ok(())
}
