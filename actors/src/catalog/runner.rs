//! Where free-form SPARQL runs: in this process, or somewhere its time and memory can be cut off (the node's query workers).
//!
//! A query's time limit is checked by the evaluator only when it reads the
//! store: a product of inline data sorted before its first row runs (and
//! allocates) unchecked. A runner that can stop such work — a process it
//! kills — is what a node serving strangers uses.

use super::{Answer, Catalog, CatalogError};
pub use oxigraph::sparql::CancellationToken;

/// Runs a read-only query over `catalog`, within its limits.
pub trait SparqlRunner: Send + Sync + 'static {
    fn run(
        &self,
        catalog: &Catalog,
        query: &str,
        cancel: &CancellationToken,
    ) -> Result<Answer, CatalogError>;
}

/// In this process: the time limit holds only where the evaluator checks
/// it (tests and trusted callers).
pub struct InProcess;

impl SparqlRunner for InProcess {
    fn run(
        &self,
        catalog: &Catalog,
        query: &str,
        cancel: &CancellationToken,
    ) -> Result<Answer, CatalogError> {
        catalog.sparql_until(query, cancel)
    }
}
