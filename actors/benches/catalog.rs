//! constraint_catalog_resources over 10,000 cloud descriptions: the paper's constraints compiled to SPARQL and run on the oxigraph catalog (`cargo bench -p intercloud-actors --bench catalog`).

use criterion::{criterion_group, criterion_main, Criterion};
use intercloud_actors::catalog::constraints::{parse, NS_RES};
use intercloud_actors::catalog::{Catalog, CatalogLimits};
use intercloud_actors::element::Element;

const CLOUDS: usize = 10_000;

/// A deterministic spread of clouds: about 1 in 30 meets the paper's constraints.
fn description(i: usize) -> String {
    let avail = ["99.9", "99.99", "99.999", "99.9999", "99.99999"][i % 5];
    let rf = 2 + i % 7;
    let country = ["JAPAN", "USA", "GERMANY"][i % 3];
    let method = ["AMQP", "XMPP"][(i / 3) % 2];
    let access = ["NFS", "iSCSI", "S3"][(i / 7) % 3];
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

fn bench(c: &mut Criterion) {
    let catalog = Catalog::new(CatalogLimits::default()).unwrap();
    for i in 0..CLOUDS {
        catalog
            .publish(&format!("c{i}.test"), &description(i))
            .unwrap();
    }
    let cs = parse(&paper_constraints()).unwrap();
    let n = catalog.matching(&cs, 100).unwrap().len();
    assert!(n > 0, "the benchmark catalog must have matches");
    let mut g = c.benchmark_group("constraint_catalog_resources");
    g.sample_size(20);
    // Every run evaluates the query: the cost of a new constraint set.
    let q = intercloud_actors::catalog::constraints::to_sparql(&cs, 100);
    g.bench_function("10000 clouds, evaluated", |b| {
        b.iter(|| catalog.matching_uncached(&q).unwrap())
    });
    // The same request again before the catalog changes: answered from the cache.
    g.bench_function("10000 clouds, repeated", |b| {
        b.iter(|| catalog.matching(&cs, 100).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
