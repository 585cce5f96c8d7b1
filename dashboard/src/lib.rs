//! # sensor-dashboard: a live picture of a zk-sensors cluster
//!
//! One process, one ZooKeeper session, one page. A background [`monitor`] reads the
//! cluster every `REFRESH_INTERVAL` (with `sensorctl status`'s reader from the coordination library,
//! plus a few reads of its own: [`snapshot`]) and probes every ZooKeeper server with `srvr`
//! ([`ensemble`]); what it sees is one [`snapshot::Snapshot`] in a `watch` channel, and what
//! changed between two of them becomes the [`timeline`].
//!
//! The [`web`] layer serves that snapshot three ways: a server-rendered page ([`view`],
//! askama; complete without JavaScript), the same state as JSON (`GET /api/v1/cluster`),
//! and a Server-Sent Events stream ([`sse`]) that sends a client only what changed since
//! its last message. The live config can be edited from the page ([`edit`]): the nodes'
//! own validation, an admin token compared in constant time, and a compare-and-set on the
//! znode version the page showed.
//!
//! The session, recipes, layout, `sensorctl status`'s reader and the nodes' validation
//! come from the coordination library (`sensor_coord`), as they do for the nodes.
//!
//! Failure behaviour: ZooKeeper unreachable or without quorum never stops the process;
//! the page keeps the last known state, says it is stale and since when, and turns live
//! again by itself once reads succeed (see the table in [`monitor`]).

#![warn(missing_docs)]

pub mod config;
pub mod edit;
pub mod ensemble;
pub mod layers;
pub mod monitor;
pub mod snapshot;
pub mod sse;
pub mod timeline;
pub mod view;
pub mod web;

use sensor_coord::zk::{Session, SessionConfig};

/// Starts the session, the monitor and returns the router (what `main` serves; tests
/// call it too).
pub fn start(config: &config::Config) -> (Session, axum::Router) {
    let session = Session::start(SessionConfig::new(
        config.zookeeper_hosts.clone(),
        std::time::Duration::from_secs(10),
    ));
    let monitor = monitor::start(
        session.clone(),
        monitor::MonitorConfig {
            zk_hosts: config.zookeeper_hosts.clone(),
            refresh: config.refresh_interval,
            zk_timeout: config.zk_timeout,
            api_url: config.api_url.clone(),
        },
    );
    let state = web::AppState::new(
        monitor,
        session.clone(),
        web::Settings {
            admin_token: config.admin_token().map(sensor_common::Secret::new),
            api_public_url: config.api_public_url.clone().or(config.api_url.clone()),
            grafana_url: config.grafana_url.clone(),
            zk_timeout: config.zk_timeout,
            request_timeout: config.request_timeout,
        },
    );
    (session, web::app(state))
}
