//! Integration tests: each starts a real `podhost` process on 127.0.0.1
//! with its own data directory and drives it with a real HTTP client.
//! The guests (examples and test guests) are built once per run.

mod accounts;
mod admin;
mod admin_page;
mod alarms;
mod assets;
mod blog;
mod browser;
mod calls;
mod chat;
mod client_address;
mod cluster;
mod cluster_alarms;
mod cluster_catalog;
mod cluster_failover;
mod cluster_handoff;
mod cluster_shared;
mod cluster_support;
mod config_vars;
mod connections;
mod counter;
mod crash;
mod credentials;
mod deploy;
mod faults;
mod game;
mod gateway;
mod harness;
mod inbox;

mod hibernation;
mod inspect;
mod isolation;
mod js_client;
mod limits;
mod locks;
mod logs;
mod migrations;
mod names;
mod node;
mod notes;
mod notes_ui;
mod operating;
mod ratelimit;
mod replication;
mod responses;
mod sessions;
mod socket_caps;
mod storage;
mod support;
mod tables;
mod team;
mod tenants;
mod toolbox;
mod webhooks;
