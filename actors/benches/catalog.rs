//! constraint_catalog_resources over 10,000 cloud descriptions: the paper's constraints compiled to SPARQL and run on the oxigraph catalog, on two spreads of clouds, and the time a restart takes to reload them (`cargo bench -p intercloud-actors --bench catalog`).

use criterion::{criterion_group, criterion_main, Criterion};
use intercloud_actors::catalog::constraints::{parse, to_sparql, NS_RES};
use intercloud_actors::catalog::{Catalog, CatalogLimits};
use intercloud_actors::element::Element;

const CLOUDS: usize = 10_000;

const COUNTRIES: [&str; 40] = [
    "JAPAN",
    "USA",
    "GERMANY",
    "FRANCE",
    "BRAZIL",
    "INDIA",
    "CHINA",
    "KOREA",
    "CANADA",
    "MEXICO",
    "SPAIN",
    "ITALY",
    "POLAND",
    "SWEDEN",
    "NORWAY",
    "FINLAND",
    "DENMARK",
    "IRELAND",
    "PORTUGAL",
    "GREECE",
    "TURKEY",
    "EGYPT",
    "KENYA",
    "NIGERIA",
    "CHILE",
    "PERU",
    "ARGENTINA",
    "COLOMBIA",
    "AUSTRALIA",
    "SINGAPORE",
    "INDONESIA",
    "VIETNAM",
    "THAILAND",
    "MALAYSIA",
    "ISRAEL",
    "AUSTRIA",
    "SWITZERLAND",
    "BELGIUM",
    "NETHERLANDS",
    "CZECHIA",
];

/// How the benchmark's clouds are spread over the constraint values.
#[derive(Clone, Copy)]
enum Spread {
    /// Three countries, two methods, three protocols: a third of the
    /// catalog serves Japan, about 1 cloud in 30 meets the paper's request
    /// (the worst case for the joins).
    Narrow,
    /// Forty countries, four methods, five protocols: each value is rare,
    /// as in a catalog of clouds around the world.
    Wide,
}

/// A deterministic cloud description.
fn description(spread: Spread, i: usize) -> String {
    // Numbers independent of the keys below (a multiplicative hash of i).
    let (a, r) = match spread {
        Spread::Narrow => (i % 5, i % 7),
        Spread::Wide => {
            let h = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize;
            (h % 5, (h / 5) % 7)
        }
    };
    let avail = ["99.9", "99.99", "99.999", "99.9999", "99.99999"][a];
    let rf = 2 + r;
    let (country, method, access) = match spread {
        Spread::Narrow => (
            ["JAPAN", "USA", "GERMANY"][i % 3],
            ["AMQP", "XMPP"][(i / 3) % 2],
            ["NFS", "iSCSI", "S3"][(i / 7) % 3],
        ),
        Spread::Wide => (
            COUNTRIES[i % 40],
            ["AMQP", "XMPP", "MQTT", "HTTP"][(i / 40) % 4],
            ["NFS", "iSCSI", "S3", "SMB", "CEPH"][(i / 160) % 5],
        ),
    };
    format!(
        "@prefix ic: <urn:intercloud:ontology#> .\n@prefix cocoon: <https://w3id.org/cocoon/v1.0.1#> .\n\
         @prefix qudt: <http://qudt.org/schema/qudt/> .\n@prefix unit: <http://qudt.org/vocab/unit/> .\n\
         <https://c{i}.test/> a ic:Cloud ; ic:cloudName \"c{i}\" ; ic:offers <https://c{i}.test/s> .\n\
         <https://c{i}.test/s> a cocoon:StorageService ;\n\
           ic:availability [ qudt:numericValue {avail} ; qudt:unit unit:PERCENT ] ;\n\
           ic:replicationFactor {rf} ; ic:tierCountry \"{country}\" ;\n\
           ic:storageReplicationMethod \"{method}\" ; ic:storageAccessProtocol \"{access}\" ;\n\
           cocoon:hasStorageSize [ qudt:numericValue {} ; qudt:unit unit:TeraBYTE ] .\n",
        10 + i % 500
    )
}

fn paper_constraints() -> Element {
    let mut cs = Element::new("constraints", NS_RES);
    for (a, v) in [
        ("availabilityQuanity ", "99.999"),
        ("replicationFactor", "5"),
        ("tierCountries", "JAPAN"),
        ("StorageReplicationMethod", "AMOP"),
        ("InterCloudStorageAccess", "NFS"),
    ] {
        cs = cs.child(
            Element::new("constraint", NS_RES)
                .child(Element::new("attribute", NS_RES).text(a))
                .child(Element::new("value", NS_RES).text(v)),
        );
    }
    cs
}

fn catalog(spread: Spread) -> Catalog {
    let catalog = Catalog::new(CatalogLimits::default()).unwrap();
    for i in 0..CLOUDS {
        catalog
            .publish(&format!("c{i}.test"), &description(spread, i))
            .unwrap();
    }
    catalog
}

fn bench(c: &mut Criterion) {
    let cs = parse(&paper_constraints()).unwrap();
    let q = to_sparql(&cs, 100);
    let mut g = c.benchmark_group("constraint_catalog_resources");
    g.sample_size(20);
    for (spread, label) in [(Spread::Narrow, "narrow"), (Spread::Wide, "wide")] {
        let catalog = catalog(spread);
        let n = catalog.matching(&cs, 100).unwrap().len();
        assert!(n > 0, "the benchmark catalog must have matches");
        eprintln!("{label} spread: {n} of {CLOUDS} clouds match the paper's request");
        // Every run evaluates the query: the cost of a new constraint set.
        g.bench_function(format!("{CLOUDS} clouds, {label} spread, evaluated"), |b| {
            b.iter(|| catalog.matching_uncached(&q).unwrap())
        });
        // The same request again before the catalog changes: answered from the cache.
        g.bench_function(format!("{CLOUDS} clouds, {label} spread, repeated"), |b| {
            b.iter(|| catalog.matching(&cs, 100).unwrap())
        });
    }
    g.finish();
    // What a restarted exchange does with its persisted descriptions.
    let mut g = c.benchmark_group("catalog_reload");
    g.sample_size(10);
    g.bench_function(format!("{CLOUDS} descriptions"), |b| {
        b.iter(|| catalog(Spread::Wide))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
