//! Scenario files: a federation, a timeline of steps and faults, invariants, and a report (`intercloud scenario run`).

pub mod churn;
pub mod fleet;
pub mod flow;
pub mod fuzz;
pub mod generate;
pub mod many;
pub mod model;
pub mod report;
pub mod run;
pub mod traffic;
