//! The catalog of an exchange or root: clouds' resource descriptions (RDF, the Intercloud ontology) in an oxigraph store, queried with SPARQL and by the paper's constraints.

pub mod constraints;
pub mod publisher;
pub mod runner;

use oxigraph::io::{RdfFormat, RdfParser};
use oxigraph::model::{GraphName, GraphNameRef, NamedNode, NamedOrBlankNode, Quad, Term};
use oxigraph::sparql::{CancellationToken, PreparedSparqlQuery, QueryResults, SparqlEvaluator};
use oxigraph::store::{StorageError, Store};
use std::time::{Duration, Instant};

/// The ontology (Turtle) every catalog starts with.
pub const ONTOLOGY: &str = include_str!("../../ontology/intercloud.ttl");
/// Our namespace.
pub const NS_IC: &str = "urn:intercloud:ontology#";
const ONTOLOGY_GRAPH: &str = "urn:intercloud:ontology";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("store: {0}")]
    Storage(#[from] StorageError),
    #[error("not Turtle: {0}")]
    Turtle(String),
    #[error("the description is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{domain} may only describe itself: subject {subject} is not under https://{domain}/")]
    ForeignSubject { domain: String, subject: String },
    #[error("the description must say <https://{0}/> a ic:Cloud with an ic:cloudName")]
    NoCloud(String),
    #[error("bad SPARQL: {0}")]
    Syntax(String),
    #[error("updates are refused: the catalog is read-only through this command")]
    Update,
    #[error("only SELECT and ASK queries are answered")]
    Form,
    #[error("the query ran past its time limit of {0:?}")]
    Timeout(Duration),
    #[error("query evaluation: {0}")]
    Evaluation(String),
    #[error("{0} is computed by the catalog and may not be stated")]
    Reserved(String),
}

/// What the catalog adds to each published description, so that constraint
/// queries compare constants with index lookups: quantities in base units
/// (`…Base`, from the ontology's multipliers) and upper-cased keys (`…Key`).
/// Descriptions may not state these themselves.
const DERIVE: &str = "PREFIX ic: <urn:intercloud:ontology#>
PREFIX cocoon: <https://w3id.org/cocoon/v1.0.1#>
PREFIX qudt: <http://qudt.org/schema/qudt/>
INSERT { GRAPH ?g { ?s ?base ?v } } WHERE {
  GRAPH ?g { ?s ?p ?q . ?q qudt:numericValue ?n ; qudt:unit ?u }
  GRAPH <urn:intercloud:ontology> { ?u qudt:conversionMultiplier ?m }
  VALUES (?p ?base) {
    (ic:availability ic:availabilityBase)
    (cocoon:hasStorageSize ic:storageSizeBase)
    (ic:price ic:priceBase)
  }
  BIND(?n * ?m AS ?v)
} ;
INSERT { GRAPH ?g { ?s ?key ?k } } WHERE {
  GRAPH ?g { ?s ?p ?o }
  VALUES (?p ?key) {
    (ic:tierCountry ic:tierCountryKey)
    (ic:storageReplicationMethod ic:storageReplicationMethodKey)
    (ic:storageAccessProtocol ic:storageAccessProtocolKey)
    (cocoon:inRegion ic:inRegionKey)
  }
  BIND(UCASE(STR(?o)) AS ?k)
}";

/// The predicates `DERIVE` writes (local names in our namespace).
const DERIVED: &[&str] = &[
    "availabilityBase",
    "storageSizeBase",
    "priceBase",
    "tierCountryKey",
    "storageReplicationMethodKey",
    "storageAccessProtocolKey",
    "inRegionKey",
];

/// The limits a catalog enforces.
#[derive(Clone, Debug)]
pub struct CatalogLimits {
    pub max_description_bytes: usize,
    /// Rows a SPARQL answer may carry (more are cut, and the answer says so).
    pub max_results: usize,
    /// How long one query may run.
    pub query_time: Duration,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        CatalogLimits {
            max_description_bytes: 1 << 20,
            max_results: 1000,
            query_time: Duration::from_secs(10),
        }
    }
}

/// What a SPARQL query answered.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Answer {
    Boolean(bool),
    Rows {
        vars: Vec<String>,
        rows: Vec<Vec<Option<Value>>>,
        /// More rows existed than `max_results`.
        truncated: bool,
    },
}

/// One bound value of a solution.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    Iri(String),
    Blank(String),
    /// A literal's lexical value.
    Literal(String),
}

impl Value {
    pub fn as_str(&self) -> &str {
        match self {
            Value::Iri(s) | Value::Blank(s) | Value::Literal(s) => s,
        }
    }
}

/// A cloud in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudEntry {
    pub name: String,
    pub domain: String,
}

/// Answers to constraint queries, valid until the next publication.
type MatchCache = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>>;

/// Most constraint answers kept between publications.
const CACHE_ENTRIES: usize = 1024;

/// The store, loaded with the ontology.
#[derive(Clone)]
pub struct Catalog {
    /// Counts changes, so copies elsewhere (query workers) know when to reload.
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    store: Store,
    pub limits: CatalogLimits,
    cache: MatchCache,
}

fn graph_of(domain: &str) -> NamedNode {
    NamedNode::new_unchecked(format!("urn:intercloud:cloud:{domain}"))
}

fn plain(t: &Term) -> Value {
    match t {
        Term::NamedNode(n) => Value::Iri(n.as_str().to_string()),
        Term::BlankNode(b) => Value::Blank(b.as_str().to_string()),
        Term::Literal(l) => Value::Literal(l.value().to_string()),
        #[allow(unreachable_patterns)]
        other => Value::Literal(other.to_string()),
    }
}

impl Catalog {
    pub fn new(limits: CatalogLimits) -> Result<Catalog, CatalogError> {
        let store = Store::new()?;
        let g = NamedNode::new_unchecked(ONTOLOGY_GRAPH);
        let quads = parse_turtle(ONTOLOGY, GraphName::NamedNode(g))?;
        store.extend(quads)?;
        Ok(Catalog {
            generation: Default::default(),
            store,
            limits,
            cache: Default::default(),
        })
    }

    /// Replaces `domain`'s description with `turtle`; returns the number of triples.
    /// Every subject must be the cloud's IRI, below it, or a blank node.
    pub fn publish(&self, domain: &str, turtle: &str) -> Result<usize, CatalogError> {
        if turtle.len() > self.limits.max_description_bytes {
            return Err(CatalogError::TooLarge(self.limits.max_description_bytes));
        }
        let domain = domain.to_ascii_lowercase();
        let base = format!("https://{domain}/");
        let graph = graph_of(&domain);
        let quads = parse_turtle(turtle, GraphName::NamedNode(graph.clone()))?;
        for q in &quads {
            let ok = match &q.subject {
                NamedOrBlankNode::NamedNode(n) => n.as_str().starts_with(&base),
                NamedOrBlankNode::BlankNode(_) => true,
            };
            if !ok {
                return Err(CatalogError::ForeignSubject {
                    domain,
                    subject: q.subject.to_string(),
                });
            }
        }
        let cloud = NamedNode::new_unchecked(base.clone());
        let is_cloud = quads.iter().any(|q| {
            q.subject == NamedOrBlankNode::NamedNode(cloud.clone())
                && q.predicate.as_str() == "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
                && q.object == Term::NamedNode(NamedNode::new_unchecked(format!("{NS_IC}Cloud")))
        });
        if let Some(q) = quads.iter().find(|q| {
            q.predicate
                .as_str()
                .strip_prefix(NS_IC)
                .map(|l| DERIVED.contains(&l))
                .unwrap_or(false)
        }) {
            return Err(CatalogError::Reserved(q.predicate.to_string()));
        }
        let named = quads.iter().any(|q| {
            q.subject == NamedOrBlankNode::NamedNode(cloud.clone())
                && q.predicate.as_str() == format!("{NS_IC}cloudName")
        });
        if !is_cloud || !named {
            return Err(CatalogError::NoCloud(domain));
        }
        let n = quads.len();
        let mut t = self.store.start_transaction()?;
        t.clear_graph(GraphNameRef::NamedNode(graph.as_ref()))?;
        for q in &quads {
            t.insert(q.as_ref());
        }
        // The derived triples land in the same transaction, for this graph only.
        SparqlEvaluator::new()
            .parse_update(&DERIVE.replace("?g", &format!("<{}>", graph.as_str())))
            .map_err(|e| CatalogError::Syntax(e.to_string()))?
            .on_transaction(&mut t)
            .execute()
            .map_err(|e| CatalogError::Evaluation(e.to_string()))?;
        t.commit()?;
        self.forget();
        Ok(n)
    }

    /// Removes a cloud's description.
    pub fn withdraw(&self, domain: &str) -> Result<(), CatalogError> {
        let g = graph_of(&domain.to_ascii_lowercase());
        self.store
            .clear_graph(GraphNameRef::NamedNode(g.as_ref()))?;
        self.forget();
        Ok(())
    }

    fn prepared(
        &self,
        text: &str,
        cancel: Option<CancellationToken>,
    ) -> Result<PreparedSparqlQuery, CatalogError> {
        let mut ev = SparqlEvaluator::new();
        if let Some(c) = cancel {
            ev = ev.with_cancellation_token(c);
        }
        let mut q = match ev.parse_query(text) {
            Ok(q) => q,
            Err(e) => {
                return Err(if SparqlEvaluator::new().parse_update(text).is_ok() {
                    CatalogError::Update
                } else {
                    CatalogError::Syntax(e.to_string())
                })
            }
        };
        q.dataset_mut().set_default_graph_as_union();
        Ok(q)
    }

    /// Checks that `text` is a query this catalog answers, without running it.
    pub fn check(&self, text: &str) -> Result<(), CatalogError> {
        self.prepared(text, None).map(|_| ())
    }

    /// Runs a read-only SELECT or ASK over every description and the ontology.
    /// The time limit is checked between solutions (see the service for
    /// queries that take long before their first one).
    pub fn sparql(&self, text: &str) -> Result<Answer, CatalogError> {
        self.sparql_until(text, &CancellationToken::new())
    }

    /// Like `sparql`, stopping when `cancel` is cancelled (the service's time limit).
    pub fn sparql_until(
        &self,
        text: &str,
        cancel: &CancellationToken,
    ) -> Result<Answer, CatalogError> {
        let q = self.prepared(text, Some(cancel.clone()))?;
        let start = Instant::now();
        let limit = self.limits.query_time;
        let stopped = |e: &dyn std::fmt::Display| {
            if cancel.is_cancelled() || start.elapsed() >= limit {
                CatalogError::Timeout(limit)
            } else {
                CatalogError::Evaluation(e.to_string())
            }
        };
        match q.on_store(&self.store).execute().map_err(|e| stopped(&e))? {
            QueryResults::Boolean(b) => Ok(Answer::Boolean(b)),
            QueryResults::Solutions(sols) => {
                let vars: Vec<String> = sols
                    .variables()
                    .iter()
                    .map(|v| v.as_str().to_string())
                    .collect();
                let mut rows = Vec::new();
                let mut truncated = false;
                for s in sols {
                    if cancel.is_cancelled() || start.elapsed() > limit {
                        return Err(CatalogError::Timeout(limit));
                    }
                    let s = s.map_err(|e| stopped(&e))?;
                    if rows.len() == self.limits.max_results {
                        truncated = true;
                        break;
                    }
                    rows.push(vars.iter().map(|v| s.get(v.as_str()).map(plain)).collect());
                }
                Ok(Answer::Rows {
                    vars,
                    rows,
                    truncated,
                })
            }
            QueryResults::Graph(_) => Err(CatalogError::Form),
        }
    }

    /// Drops cached answers (the catalog changed).
    fn forget(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Changes so far: a copy loaded at one generation is current while
    /// this still says the same.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The whole store (descriptions, derived triples, ontology) as N-Quads.
    pub fn dump(&self) -> Result<Vec<u8>, CatalogError> {
        self.store
            .dump_to_writer(RdfFormat::NQuads, Vec::new())
            .map_err(|e| CatalogError::Evaluation(format!("dump: {e}")))
    }

    /// Replaces everything with a [`Catalog::dump`] of another catalog.
    pub fn load_dump(&self, nquads: &[u8]) -> Result<(), CatalogError> {
        self.store.clear()?;
        self.store
            .load_from_reader(RdfParser::from_format(RdfFormat::NQuads), nquads)
            .map_err(|e| CatalogError::Turtle(e.to_string()))?;
        self.forget();
        Ok(())
    }

    /// The names of the clouds whose services meet every constraint, best
    /// headroom first. Answers are cached until the next publication.
    pub fn matching(
        &self,
        cs: &[constraints::Constraint],
        limit: usize,
    ) -> Result<Vec<String>, CatalogError> {
        let q = constraints::to_sparql(cs, limit);
        if let Some(hit) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&q) {
            return Ok(hit.clone());
        }
        let names = self.matching_uncached(&q)?;
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CACHE_ENTRIES {
            c.clear();
        }
        c.insert(q, names.clone());
        Ok(names)
    }

    /// Runs a compiled constraint query without the cache (benchmarks).
    pub fn matching_uncached(&self, q: &str) -> Result<Vec<String>, CatalogError> {
        match self.sparql(q)? {
            Answer::Rows { rows, .. } => Ok(rows
                .into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
                .map(|v| v.as_str().to_string())
                .collect()),
            Answer::Boolean(_) => Ok(Vec::new()),
        }
    }

    /// Every cloud described in the catalog.
    pub fn clouds(&self) -> Result<Vec<CloudEntry>, CatalogError> {
        let q = format!(
            "{}SELECT ?name ?cloud WHERE {{ ?cloud a ic:Cloud ; ic:cloudName ?name }} ORDER BY ?name",
            constraints::PREFIXES
        );
        match self.sparql(&q)? {
            Answer::Rows { rows, .. } => Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let name = r.first()?.clone()?.as_str().to_string();
                    let iri = r.get(1)?.clone()?.as_str().to_string();
                    let domain = iri
                        .strip_prefix("https://")?
                        .trim_end_matches('/')
                        .to_string();
                    Some(CloudEntry { name, domain })
                })
                .collect()),
            Answer::Boolean(_) => Ok(Vec::new()),
        }
    }
}

fn parse_turtle(text: &str, graph: GraphName) -> Result<Vec<Quad>, CatalogError> {
    RdfParser::from_format(RdfFormat::Turtle)
        .with_default_graph(graph)
        .for_slice(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CatalogError::Turtle(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn description(
        domain: &str,
        name: &str,
        avail: &str,
        rf: u32,
        countries: &[&str],
        method: &str,
        access: &str,
    ) -> String {
        let countries = countries
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "@prefix ic: <urn:intercloud:ontology#> .\n\
             @prefix cocoon: <https://w3id.org/cocoon/v1.0.1#> .\n\
             @prefix qudt: <http://qudt.org/schema/qudt/> .\n\
             @prefix unit: <http://qudt.org/vocab/unit/> .\n\
             <https://{domain}/> a ic:Cloud ; ic:cloudName \"{name}\" ; ic:domain \"{domain}\" ; ic:offers <https://{domain}/storage> .\n\
             <https://{domain}/storage> a cocoon:StorageService ;\n\
               ic:availability [ qudt:numericValue {avail} ; qudt:unit unit:PERCENT ] ;\n\
               ic:replicationFactor {rf} ; ic:tierCountry {countries} ;\n\
               ic:storageReplicationMethod \"{method}\" ; ic:storageAccessProtocol \"{access}\" ;\n\
               cocoon:hasStorageSize [ qudt:numericValue 20 ; qudt:unit unit:TeraBYTE ] .\n"
        )
    }

    #[test]
    fn publish_match_replace_and_refuse() {
        let c = Catalog::new(CatalogLimits::default()).unwrap();
        c.publish(
            "cloud2.test",
            &description(
                "cloud2.test",
                "cloud2",
                "99.9999",
                6,
                &["JAPAN", "USA"],
                "AMQP",
                "NFS",
            ),
        )
        .unwrap();
        c.publish(
            "cloud3.test",
            &description(
                "cloud3.test",
                "cloud3",
                "99.9",
                6,
                &["JAPAN"],
                "AMQP",
                "NFS",
            ),
        )
        .unwrap();
        let el = crate::element::Element::new("constraints", constraints::NS_RES)
            .child(
                crate::element::Element::new("constraint", constraints::NS_RES)
                    .child(crate::element::Element::new("attribute", "").text("availability"))
                    .child(crate::element::Element::new("value", "").text("99.999")),
            )
            .child(
                crate::element::Element::new("constraint", constraints::NS_RES)
                    .child(crate::element::Element::new("attribute", "").text("capacity"))
                    .child(crate::element::Element::new("value", "").text("15000 GB")),
            );
        let cs = constraints::parse(&el).unwrap();
        assert_eq!(c.matching(&cs, 10).unwrap(), vec!["cloud2"]);
        // Re-publishing replaces.
        c.publish(
            "cloud2.test",
            &description(
                "cloud2.test",
                "cloud2",
                "99.0",
                6,
                &["JAPAN"],
                "AMQP",
                "NFS",
            ),
        )
        .unwrap();
        assert!(c.matching(&cs, 10).unwrap().is_empty());
        assert_eq!(c.clouds().unwrap().len(), 2);
        // Nobody describes another cloud.
        let foreign = description("cloud3.test", "cloud3", "100", 9, &["JAPAN"], "AMQP", "NFS");
        assert!(matches!(
            c.publish("cloud2.test", &foreign),
            Err(CatalogError::ForeignSubject { .. })
        ));
        assert!(matches!(
            c.publish("cloud2.test", "not turtle <"),
            Err(CatalogError::Turtle(_))
        ));
        // What the catalog derives cannot be stated.
        let lying = description("cloud2.test", "cloud2", "90", 6, &["JAPAN"], "AMQP", "NFS")
            + "<https://cloud2.test/storage> <urn:intercloud:ontology#availabilityBase> 1.0 .\n";
        assert!(matches!(
            c.publish("cloud2.test", &lying),
            Err(CatalogError::Reserved(_))
        ));
        // Read-only.
        assert!(matches!(
            c.sparql("DELETE WHERE { ?s ?p ?o }"),
            Err(CatalogError::Update)
        ));
        assert!(matches!(
            c.sparql("CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }"),
            Err(CatalogError::Form)
        ));
        assert_eq!(
            c.sparql("ASK { ?s a <urn:intercloud:ontology#Cloud> }")
                .unwrap(),
            Answer::Boolean(true)
        );
    }
}
