//! Dev-only crate: its tests (in `tests/`) check the deployment files at the repository root,
//! without a Docker engine except for `docker_e2e.rs`.
//!
//! * `compose_schema.rs` — `docker-compose.yml` and `docker-compose-cluster.yml`, with merge
//!   keys resolved and `.env.example` interpolated, validate against the Compose
//!   Specification JSON schema (vendored in `spec/`).
//! * `compose_topology.rs` — what the README promises about them: pinned images, a
//!   healthcheck on every service, start-up ordered by health, the ports, AOF on a named
//!   volume, every node given every ZooKeeper server, secrets only from `.env`.
//! * `docker_e2e.rs` (ignored unless asked for; `scripts/test` runs it where a Docker engine
//!   answers) — `docker compose up` of both files for real, with our image built from the
//!   `Dockerfile` and local stand-ins for the public images (`images/standin.sh`).
//!
//! That each of our services' `command` + `environment` is accepted by the real binary is
//! checked next to the binaries (`node/tests/compose_config.rs`,
//! `api/tests/compose_config.rs`), where cargo builds them for the test.
