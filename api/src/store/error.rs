//! The store's one error type and how Redis errors map onto it.

/// Redis error codes that mean "the server cannot take this now; retry later".
pub const UNAVAILABLE_CODES: [&str; 5] = ["OOM", "READONLY", "BUSY", "LOADING", "MASTERDOWN"];

/// Errors from the store.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable, too slow, or refused the command for a transient reason.
    #[error("redis unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// Redis answered something this code does not understand (a bug or foreign data).
    #[error("unexpected data in redis: {0}")]
    Corrupt(String),
    /// The caller passed arguments that make no sense (e.g. a zero bucket width).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<redis::RedisError> for StoreError {
    /// Server-side unavailability is [`StoreError::Unavailable`] (503, retry) also when a
    /// script hits it: [`UNAVAILABLE_CODES`] (a full Redis under `noeviction`, a read-only
    /// replica, a busy or loading server, a replica without its master). Any other failing
    /// Lua script is a bug in this crate, not an outage: it becomes
    /// [`StoreError::Corrupt`] (500, logged) so clients do not retry it forever. Everything
    /// else (I/O, timeouts, refused connections) is [`StoreError::Unavailable`].
    fn from(e: redis::RedisError) -> Self {
        let text = e.to_string();
        if e.code().is_some_and(|c| UNAVAILABLE_CODES.contains(&c)) {
            return StoreError::Unavailable(e);
        }
        if text.contains("user_script") || text.contains("Error running script") {
            StoreError::Corrupt(format!("redis script failed: {text}"))
        } else {
            StoreError::Unavailable(e)
        }
    }
}
