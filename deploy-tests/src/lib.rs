//! Dev-only crate: its tests (in `tests/`) check the deployment files at the repository root
//! without a Docker engine.
//!
//! * `compose_schema.rs` — `docker-compose.yml` and `docker-compose-cluster.yml`, with merge
//!   keys resolved and `.env.example` interpolated, validate against the Compose
//!   Specification JSON schema (vendored in `spec/`).
//! * `compose_topology.rs` — what the README promises about them: pinned images, a
//!   healthcheck on every service, start-up ordered by health, the ports, AOF on a named
//!   volume, every node given every ZooKeeper server, secrets only from `.env`.
//!
//! That each of our services' `command` + `environment` is accepted by the real binary is
//! checked next to the binaries (`node/tests/compose_config.rs`,
//! `api/tests/compose_config.rs`), where cargo builds them for the test.
