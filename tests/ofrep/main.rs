//! End-to-end tests of the OpenFeature Remote Evaluation Protocol endpoints
//! (`/ofrep/v1/evaluate/flags[/{key}]`): a real flaglog server on loopback over a real database,
//! every behaviour on both backends. The environment is built through the admin API
//! ([`fixture::shop`]) and read over OFREP with a client of its own ([`fixture::Ofrep`]), since
//! OFREP answers errors in the protocol's shape rather than flaglog's admin one.

mod anonymous;
mod bulk;
mod errors;
mod evaluate;
mod fixture;
