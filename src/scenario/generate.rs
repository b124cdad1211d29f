//! Resource descriptions drawn from distributions with a seed (for scenarios of many clouds), their Turtle, and the oracle: which of them a constraint request matches, in the catalog's rank order, computed in plain Rust from the scenario's own data.

use intercloud_actors::catalog::constraints::{Attr, Constraint};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// `[federation.generate]`: what clouds without a Turtle file offer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateSpec {
    /// Seed of the draw (default: the run's `--seed`).
    pub seed: Option<u64>,
    /// Availability in percent, drawn uniformly from [low, high].
    pub availability: [f64; 2],
    /// Replication factor, drawn uniformly from [low, high].
    pub replication_factor: [u32; 2],
    /// Countries; each cloud serves 1 to 3 of them.
    pub countries: Vec<String>,
    /// Storage replication methods; each cloud supports 1 or 2.
    pub methods: Vec<String>,
    /// Storage access protocols; each cloud supports 1 or 2.
    pub protocols: Vec<String>,
    /// Storage in TB, drawn uniformly from [low, high].
    pub storage_tb: [u32; 2],
}

impl Default for GenerateSpec {
    fn default() -> Self {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        GenerateSpec {
            seed: None,
            availability: [99.9, 99.99999],
            replication_factor: [1, 8],
            countries: v(&["JAPAN", "USA", "GERMANY", "FRANCE", "BRAZIL", "INDIA"]),
            methods: v(&["AMQP", "XMPP", "RSYNC"]),
            protocols: v(&["NFS", "ISCSI", "S3"]),
            storage_tb: [1, 1000],
        }
    }
}

/// One cloud's drawn storage service.
#[derive(Clone, Debug, PartialEq)]
pub struct Drawn {
    pub domain: String,
    pub name: String,
    /// Percent, four decimals.
    pub availability: f64,
    pub replication_factor: u32,
    pub countries: Vec<String>,
    pub methods: Vec<String>,
    pub protocols: Vec<String>,
    pub storage_tb: u32,
}

fn pick(rng: &mut rand::rngs::StdRng, from: &[String], most: usize) -> Vec<String> {
    if from.is_empty() {
        return Vec::new();
    }
    let n = rng.gen_range(1..=most.min(from.len()));
    let mut v: Vec<String> = from.choose_multiple(rng, n).cloned().collect();
    v.sort();
    v
}

/// Draws a description for each of `domains` (the same seed, the same draw).
pub fn draw(spec: &GenerateSpec, domains: &[String], seed: u64) -> Vec<Drawn> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed.unwrap_or(seed));
    domains
        .iter()
        .map(|d| {
            let [a, b] = spec.availability;
            let availability = (rng.gen_range(a.min(b)..=a.max(b)) * 10_000.0).round() / 10_000.0;
            let [r1, r2] = spec.replication_factor;
            let [s1, s2] = spec.storage_tb;
            Drawn {
                domain: d.clone(),
                name: d.split('.').next().unwrap_or(d).to_string(),
                availability,
                replication_factor: rng.gen_range(r1.min(r2)..=r1.max(r2)),
                countries: pick(&mut rng, &spec.countries, 3),
                methods: pick(&mut rng, &spec.methods, 2),
                protocols: pick(&mut rng, &spec.protocols, 2),
                storage_tb: rng.gen_range(s1.min(s2)..=s1.max(s2)),
            }
        })
        .collect()
}

fn list(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The description in Turtle, with the ontology of `actors/ontology/intercloud.ttl`.
pub fn turtle(c: &Drawn) -> String {
    format!(
        "# {d}: drawn from the scenario's distributions.\n\
@prefix ic: <urn:intercloud:ontology#> .\n\
@prefix cocoon: <https://w3id.org/cocoon/v1.0.1#> .\n\
@prefix qudt: <http://qudt.org/schema/qudt/> .\n\
@prefix unit: <http://qudt.org/vocab/unit/> .\n\n\
<https://{d}/> a ic:Cloud ; ic:cloudName \"{n}\" ; ic:domain \"{d}\" ;\n    ic:offers <https://{d}/storage> .\n\
<https://{d}/storage> a cocoon:StorageService ;\n\
    ic:availability [ qudt:numericValue {a} ; qudt:unit unit:PERCENT ] ;\n\
    ic:replicationFactor {rf} ;\n\
    ic:tierCountry {countries} ;\n\
    ic:storageReplicationMethod {methods} ;\n\
    ic:storageAccessProtocol {protocols} ;\n\
    cocoon:hasStorageSize [ qudt:numericValue {tb} ; qudt:unit unit:TeraBYTE ] .\n",
        d = c.domain,
        n = c.name,
        a = c.availability,
        rf = c.replication_factor,
        countries = list(&c.countries),
        methods = list(&c.methods),
        protocols = list(&c.protocols),
        tb = c.storage_tb,
    )
}

fn has(v: &[String], x: &str) -> bool {
    v.iter().any(|s| s.eq_ignore_ascii_case(x))
}

/// Whether `c` meets every constraint; None when a constraint is of a kind
/// the drawn data does not describe (the oracle cannot judge it).
fn meets(c: &Drawn, cs: &[Constraint]) -> Option<bool> {
    for k in cs {
        let ok = match k {
            Constraint::AtLeast {
                attr: Attr::Availability,
                value,
                multiplier,
            } => {
                // The catalog stores availability as a fraction.
                let bound: f64 = value.parse().ok()?;
                let bound = match multiplier {
                    Some(m) => bound * m.parse::<f64>().ok()?,
                    None => bound,
                };
                c.availability / 100.0 >= bound - 1e-12
            }
            Constraint::AtLeast {
                attr: Attr::ReplicationFactor,
                value,
                ..
            } => c.replication_factor as f64 >= value.parse::<f64>().ok()?,
            Constraint::Has {
                attr: Attr::Country,
                value,
            } => has(&c.countries, value),
            Constraint::Has {
                attr: Attr::ReplicationMethod,
                value,
            } => has(&c.methods, value),
            Constraint::Has {
                attr: Attr::AccessProtocol,
                value,
            } => has(&c.protocols, value),
            _ => return None,
        };
        if !ok {
            return Some(false);
        }
    }
    Some(true)
}

/// The names of the clouds of `among` that meet `cs`, in the catalog's
/// order (availability, then replication factor, highest first, then name);
/// None when the constraints go beyond what the drawn data describes.
pub fn oracle(among: &[&Drawn], cs: &[Constraint]) -> Option<Vec<String>> {
    let mut hit = Vec::new();
    for c in among {
        if meets(c, cs)? {
            hit.push(*c);
        }
    }
    hit.sort_by(|a, b| {
        b.availability
            .partial_cmp(&a.availability)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.replication_factor.cmp(&a.replication_factor))
            .then(a.name.cmp(&b.name))
    });
    Some(hit.into_iter().map(|c| c.name.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_clouds() {
        let d: Vec<String> = (1..=20).map(|i| format!("cloud{i}.test")).collect();
        let s = GenerateSpec::default();
        assert_eq!(draw(&s, &d, 3), draw(&s, &d, 3));
        assert_ne!(draw(&s, &d, 3), draw(&s, &d, 4));
    }

    #[test]
    fn drawn_turtle_is_accepted_and_the_catalog_agrees_with_the_oracle() {
        let d: Vec<String> = (1..=100).map(|i| format!("cloud{i}.test")).collect();
        let spec = GenerateSpec {
            availability: [99.998, 99.9999],
            replication_factor: [3, 8],
            countries: vec![
                "JAPAN".into(),
                "USA".into(),
                "FRANCE".into(),
                "INDIA".into(),
            ],
            ..Default::default()
        };
        let drawn = draw(&spec, &d, 11);
        let cat = intercloud_actors::catalog::Catalog::new(Default::default()).unwrap();
        for c in &drawn {
            cat.publish(&c.domain, &turtle(c)).unwrap();
        }
        let req = include_str!("../../scenarios/data/paper_request.xml");
        let el = crate::xmpp::codec::parse_stanza(req, "jabber:client").unwrap();
        let cs = intercloud_actors::catalog::constraints::parse(&el).unwrap();
        let refs: Vec<&Drawn> = drawn.iter().collect();
        let want = oracle(&refs, &cs).unwrap();
        let got = cat.matching(&cs, 100).unwrap();
        assert!(want.len() >= 2, "{want:?}");
        assert_eq!(got, want);
    }
}
