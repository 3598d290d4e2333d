//! The load generator against a real hub (real `redis-server`, admin API, supervisor,
//! workers, gateway and mock REST API, debug builds): a functional check under load,
//! never a speed test.

mod binaries;
mod connections;
mod failures;
mod hub_command;
mod smoke;
