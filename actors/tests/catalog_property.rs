//! Property: for random catalogs and random constraints, the catalog's answer (constraints compiled to SPARQL over oxigraph) equals a plain-Rust filter over the same data.

use intercloud_actors::catalog::constraints::{parse, NS_RES};
use intercloud_actors::catalog::{Catalog, CatalogLimits};
use intercloud_actors::element::Element;
use proptest::prelude::*;

const COUNTRIES: &[&str] = &["JAPAN", "USA", "GERMANY", "KOREA"];
const METHODS: &[&str] = &["AMQP", "XMPP", "RSYNC"];
const ACCESS: &[&str] = &["NFS", "ISCSI", "S3"];

#[derive(Debug, Clone)]
struct Cloud {
    /// Availability in thousandths of a percent (99000 = 99.000 %).
    avail: u32,
    /// Stated as a fraction (unit:UNITLESS) instead of a percentage.
    as_fraction: bool,
    rf: u32,
    countries: Vec<&'static str>,
    methods: Vec<&'static str>,
    access: Vec<&'static str>,
    /// Capacity in GB; stated in TB when a whole number of TB and `in_tb`.
    gb: u32,
    in_tb: bool,
}

#[derive(Debug, Clone)]
enum C {
    Avail(u32),
    Rf(u32),
    Country(&'static str),
    Method(&'static str),
    Access(&'static str),
    CapacityGb(u32),
}

fn subset(of: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(of, 0..=of.len())
}

fn cloud() -> impl Strategy<Value = Cloud> {
    (
        99000u32..=100000,
        any::<bool>(),
        1u32..8,
        subset(COUNTRIES),
        subset(METHODS),
        subset(ACCESS),
        1u32..40,
        any::<bool>(),
    )
        .prop_map(
            |(avail, as_fraction, rf, countries, methods, access, tb, in_tb)| Cloud {
                avail,
                as_fraction,
                rf,
                countries,
                methods,
                access,
                gb: tb * 1000,
                in_tb,
            },
        )
}

fn constraint() -> impl Strategy<Value = C> {
    prop_oneof![
        (99000u32..=100000).prop_map(C::Avail),
        (1u32..8).prop_map(C::Rf),
        proptest::sample::select(COUNTRIES).prop_map(C::Country),
        proptest::sample::select(METHODS).prop_map(C::Method),
        proptest::sample::select(ACCESS).prop_map(C::Access),
        (1u32..40000).prop_map(C::CapacityGb),
    ]
}

/// "99.123" from thousandths of a percent.
fn percent(t: u32) -> String {
    format!("{}.{:03}", t / 1000, t % 1000)
}

fn turtle(i: usize, c: &Cloud) -> String {
    let d = format!("c{i}.test");
    let q = |xs: &[&str]| {
        xs.iter()
            .map(|x| format!("\"{}\"", x.to_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let avail = if c.as_fraction {
        // t thousandths of a percent = t / 100000 as a fraction.
        format!(
            "[ qudt:numericValue {}.{:05} ; qudt:unit unit:UNITLESS ]",
            c.avail / 100000,
            c.avail % 100000
        )
    } else {
        format!(
            "[ qudt:numericValue {} ; qudt:unit unit:PERCENT ]",
            percent(c.avail)
        )
    };
    let size = if c.in_tb {
        format!(
            "[ qudt:numericValue {} ; qudt:unit unit:TeraBYTE ]",
            c.gb / 1000
        )
    } else {
        format!("[ qudt:numericValue {} ; qudt:unit unit:GigaBYTE ]", c.gb)
    };
    let mut t = format!(
        "@prefix ic: <urn:intercloud:ontology#> .\n@prefix cocoon: <https://w3id.org/cocoon/v1.0.1#> .\n\
         @prefix qudt: <http://qudt.org/schema/qudt/> .\n@prefix unit: <http://qudt.org/vocab/unit/> .\n\
         <https://{d}/> a ic:Cloud ; ic:cloudName \"c{i}\" ; ic:offers <https://{d}/s> .\n\
         <https://{d}/s> a cocoon:StorageService ; ic:availability {avail} ; ic:replicationFactor {} ; cocoon:hasStorageSize {size}",
        c.rf
    );
    for (p, xs) in [
        ("ic:tierCountry", &c.countries),
        ("ic:storageReplicationMethod", &c.methods),
        ("ic:storageAccessProtocol", &c.access),
    ] {
        if !xs.is_empty() {
            t.push_str(&format!(" ; {p} {}", q(xs)));
        }
    }
    t.push_str(" .\n");
    t
}

fn request(cs: &[C]) -> Element {
    let mut el = Element::new("constraints", NS_RES);
    for c in cs {
        let (a, v) = match c {
            C::Avail(t) => ("availabilityQuanity", percent(*t)),
            C::Rf(n) => ("replicationFactor", n.to_string()),
            C::Country(x) => ("tierCountries", x.to_string()),
            C::Method(x) => ("StorageReplicationMethod", x.to_string()),
            C::Access(x) => ("InterCloudStorageAccess", x.to_string()),
            C::CapacityGb(g) => ("storageCapacity", format!("{g} GB")),
        };
        el = el.child(
            Element::new("constraint", NS_RES)
                .child(Element::new("attribute", NS_RES).text(a))
                .child(Element::new("value", NS_RES).text(v)),
        );
    }
    Element::new("in", "urn:xmpp:tmp:io-data").child(el)
}

fn oracle(clouds: &[Cloud], cs: &[C]) -> Vec<String> {
    let mut out: Vec<String> = clouds
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            cs.iter().all(|k| match k {
                C::Avail(t) => c.avail >= *t,
                C::Rf(n) => c.rf >= *n,
                C::Country(x) => c.countries.contains(x),
                C::Method(x) => c.methods.contains(x),
                C::Access(x) => c.access.contains(x),
                C::CapacityGb(g) => c.gb >= *g,
            })
        })
        .map(|(i, _)| format!("c{i}"))
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn answers_equal_the_plain_filter(
        clouds in proptest::collection::vec(cloud(), 1..12),
        cs in proptest::collection::vec(constraint(), 0..5),
    ) {
        let catalog = Catalog::new(CatalogLimits::default()).unwrap();
        for (i, c) in clouds.iter().enumerate() {
            catalog.publish(&format!("c{i}.test"), &turtle(i, c)).unwrap();
        }
        let parsed = parse(&request(&cs)).unwrap();
        let mut got = catalog.matching(&parsed, 1000).unwrap();
        got.sort();
        prop_assert_eq!(got, oracle(&clouds, &cs));
    }
}
