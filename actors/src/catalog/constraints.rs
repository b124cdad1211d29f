//! The paper's `<constraints>` payload (§6): parsing it leniently, and compiling it to one SPARQL query over the catalog.

use crate::element::Element;

/// The paper's XML namespace for catalog payloads.
pub const NS_RES: &str = "http://www.csp/resOntology";

/// What a constraint is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    Availability,
    ReplicationFactor,
    Country,
    ReplicationMethod,
    AccessProtocol,
    Capacity,
    Price,
    Region,
}

impl Attr {
    /// The attribute named in a request: trimmed, case-insensitive, with the paper's spellings.
    pub fn parse(name: &str) -> Option<Attr> {
        let n: String = name
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match n.as_str() {
            "availabilityquanity" | "availabilityquantity" | "availability" => Attr::Availability,
            "replicationfactor" => Attr::ReplicationFactor,
            "tiercountries" | "tiercountry" | "country" | "countries" => Attr::Country,
            "storagereplicationmethod" | "replicationmethod" => Attr::ReplicationMethod,
            "intercloudstorageaccess" | "storageaccessprotocol" | "storageaccess" => {
                Attr::AccessProtocol
            }
            "storagecapacity" | "capacity" | "storagesize" => Attr::Capacity,
            "maxprice" | "price" => Attr::Price,
            "region" => Attr::Region,
            _ => return None,
        })
    }

    /// The property a query compares: the catalog's derived one (base
    /// units, upper-cased keys), or the stated one for plain numbers.
    fn derived(self) -> &'static str {
        match self {
            Attr::Availability => "ic:availabilityBase",
            Attr::ReplicationFactor => "ic:replicationFactor",
            Attr::Country => "ic:tierCountryKey",
            Attr::ReplicationMethod => "ic:storageReplicationMethodKey",
            Attr::AccessProtocol => "ic:storageAccessProtocolKey",
            Attr::Capacity => "ic:storageSizeBase",
            Attr::Price => "ic:priceBase",
            Attr::Region => "ic:inRegionKey",
        }
    }
}

/// One compiled constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// A quantity (with the multiplier of its unit to the base unit) or a count, at least this.
    AtLeast {
        attr: Attr,
        value: String,
        multiplier: Option<&'static str>,
    },
    /// At most this (prices).
    AtMost {
        attr: Attr,
        value: String,
        multiplier: Option<&'static str>,
    },
    /// The service lists this value (upper-cased).
    Has { attr: Attr, value: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConstraintError {
    #[error("no <constraints> element in the input")]
    Missing,
    #[error("a <constraint> lacks its <attribute> or <value>")]
    Incomplete,
    #[error("unknown attribute {0:?}")]
    UnknownAttribute(String),
    #[error("attribute {attr:?}: bad value {value:?} ({why})")]
    BadValue {
        attr: String,
        value: String,
        why: &'static str,
    },
    #[error("too many constraints (at most {0})")]
    TooMany(usize),
}

/// Most constraints one request may carry.
pub const MAX_CONSTRAINTS: usize = 32;

/// A plain decimal number, as SPARQL's decimal literal accepts it.
fn decimal(s: &str) -> Option<String> {
    let s = s.trim().strip_prefix('+').unwrap_or(s.trim());
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let ok = !int.is_empty()
        && int.len() <= 30
        && frac.len() <= 30
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| {
        if frac.is_empty() {
            format!("{int}.0")
        } else {
            format!("{int}.{frac}")
        }
    })
}

/// Splits "10 TB" into the number and the multiplier of its unit.
fn quantity(attr: Attr, raw: &str) -> Result<(String, &'static str), &'static str> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(raw.len());
    let (num, unit) = raw.split_at(split);
    let value = decimal(num).ok_or("not a number")?;
    let unit = unit.trim().to_ascii_lowercase();
    let m = match (attr, unit.as_str()) {
        (Attr::Availability, "" | "%" | "percent") => "0.01",
        (Attr::Capacity, "b" | "byte" | "bytes") => "1.0",
        (Attr::Capacity, "" | "gb") => "1000000000.0",
        (Attr::Capacity, "tb") => "1000000000000.0",
        (Attr::Capacity, "pb") => "1000000000000000.0",
        (Attr::Capacity, "gib") => "1073741824.0",
        (Attr::Capacity, "tib") => "1099511627776.0",
        (Attr::Price, "" | "usd" | "usd/gb-month") => "1.0",
        _ => return Err("unknown unit"),
    };
    Ok((value, m))
}

/// Reads every `<constraint>` of the `<constraints>` element found anywhere
/// in `input` (children are matched by local name, in any namespace: real
/// clients put unqualified elements in `<in>`).
pub fn parse(input: &Element) -> Result<Vec<Constraint>, ConstraintError> {
    let cs = find(input, "constraints").ok_or(ConstraintError::Missing)?;
    let mut out = Vec::new();
    for c in cs.elements().filter(|e| e.name == "constraint") {
        if out.len() == MAX_CONSTRAINTS {
            return Err(ConstraintError::TooMany(MAX_CONSTRAINTS));
        }
        let text = |n: &str| {
            c.elements()
                .find(|e| e.name == n)
                .map(|e| e.text_content().trim().to_string())
        };
        let (Some(name), Some(value)) = (text("attribute"), text("value")) else {
            return Err(ConstraintError::Incomplete);
        };
        let attr =
            Attr::parse(&name).ok_or_else(|| ConstraintError::UnknownAttribute(name.clone()))?;
        let bad = |why| ConstraintError::BadValue {
            attr: name.clone(),
            value: value.clone(),
            why,
        };
        out.push(match attr {
            Attr::Availability | Attr::Capacity => {
                let (v, m) = quantity(attr, &value).map_err(bad)?;
                Constraint::AtLeast {
                    attr,
                    value: v,
                    multiplier: Some(m),
                }
            }
            Attr::Price => {
                let (v, m) = quantity(attr, &value).map_err(bad)?;
                Constraint::AtMost {
                    attr,
                    value: v,
                    multiplier: Some(m),
                }
            }
            Attr::ReplicationFactor => Constraint::AtLeast {
                attr,
                value: decimal(&value).ok_or_else(|| bad("not a number"))?,
                multiplier: None,
            },
            Attr::Country | Attr::ReplicationMethod | Attr::AccessProtocol | Attr::Region => {
                let v = value.to_uppercase();
                if v.is_empty() || v.len() > 200 || v.chars().any(|c| c.is_control()) {
                    return Err(bad("empty, too long or with control characters"));
                }
                // The seed text's "AMOP" is a scanning slip for AMQP (§7 says AMQP).
                let v = if attr == Attr::ReplicationMethod && v == "AMOP" {
                    "AMQP".to_string()
                } else {
                    v
                };
                Constraint::Has { attr, value: v }
            }
        });
    }
    Ok(out)
}

/// Depth-first search for an element by local name.
fn find<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    if e.name == name {
        return Some(e);
    }
    e.elements().find_map(|c| find(c, name))
}

/// A SPARQL string literal.
fn string_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

pub const PREFIXES: &str = "PREFIX ic: <urn:intercloud:ontology#>\n\
PREFIX cocoon: <https://w3id.org/cocoon/v1.0.1#>\n\
PREFIX qudt: <http://qudt.org/schema/qudt/>\n";

/// One SELECT returning `?name` (and ranking columns) of every cloud with a
/// service that meets all constraints, best headroom first, at most `limit`.
/// It reads the values the catalog derives at publication (base units,
/// upper-cased keys), so every constraint is an index lookup or a
/// comparison with a constant, inside one cloud's graph.
pub fn to_sparql(cs: &[Constraint], limit: usize) -> String {
    let mut keys = String::new();
    let mut numbers = String::new();
    let mut select = String::from("?name");
    let mut order = String::new();
    for (i, c) in cs.iter().enumerate() {
        match c {
            Constraint::AtLeast {
                attr,
                value,
                multiplier,
            }
            | Constraint::AtMost {
                attr,
                value,
                multiplier,
            } => {
                let (cmp, agg, dir) = if matches!(c, Constraint::AtLeast { .. }) {
                    (">=", "MAX", "DESC")
                } else {
                    ("<=", "MIN", "ASC")
                };
                let p = attr.derived();
                let bound = match multiplier {
                    Some(m) => format!("{value} * {m}"),
                    None => value.clone(),
                };
                numbers.push_str(&format!(
                    "    ?svc {p} ?v{i} . FILTER(?v{i} {cmp} {bound})\n"
                ));
                select.push_str(&format!(" ({agg}(?v{i}) AS ?r{i})"));
                order.push_str(&format!("{dir}(?r{i}) "));
            }
            Constraint::Has { attr, value } => {
                keys.push_str(&format!(
                    "    ?svc {} {} .\n",
                    attr.derived(),
                    string_literal(value)
                ));
            }
        }
    }
    format!(
        "{PREFIXES}SELECT {select} WHERE {{\n  GRAPH ?g {{\n{keys}{numbers}    ?cloud ic:offers ?svc ; a ic:Cloud ; ic:cloudName ?name .\n  }}\n}}\nGROUP BY ?cloud ?name\nORDER BY {order}?name\nLIMIT {limit}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraints(pairs: &[(&str, &str)]) -> Element {
        let mut cs = Element::new("constraints", NS_RES);
        for (a, v) in pairs {
            cs = cs.child(
                Element::new("constraint", NS_RES)
                    .child(Element::new("attribute", NS_RES).text(*a))
                    .child(Element::new("value", NS_RES).text(*v)),
            );
        }
        Element::new("in", "urn:xmpp:tmp:io-data").child(cs)
    }

    #[test]
    fn the_papers_attributes() {
        let cs = parse(&constraints(&[
            ("availabilityQuanity ", "99.999"),
            ("replicationFactor", "5"),
            ("tierCountries", "JAPAN"),
            ("StorageReplicationMethod\n         ", "AMOP"),
            ("InterCloudStorageAccess\n", "NFS"),
        ]))
        .unwrap();
        assert_eq!(cs.len(), 5);
        assert_eq!(
            cs[3],
            Constraint::Has {
                attr: Attr::ReplicationMethod,
                value: "AMQP".into()
            }
        );
        let q = to_sparql(&cs, 10);
        assert!(
            q.contains("ic:availabilityBase ?v0 . FILTER(?v0 >= 99.999 * 0.01)"),
            "{q}"
        );
        assert!(q.contains("ic:storageReplicationMethodKey \"AMQP\""), "{q}");
        assert!(q.contains("LIMIT 10"));
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            parse(&constraints(&[("colour", "blue")])),
            Err(ConstraintError::UnknownAttribute("colour".into()))
        );
        assert!(matches!(
            parse(&constraints(&[("replicationFactor", "5; DROP")])),
            Err(ConstraintError::BadValue { .. })
        ));
        assert!(matches!(
            parse(&constraints(&[("capacity", "10 furlongs")])),
            Err(ConstraintError::BadValue { .. })
        ));
        assert_eq!(
            parse(&Element::new("in", "x")),
            Err(ConstraintError::Missing)
        );
        // Values cannot break out of their string literal.
        let cs = parse(&constraints(&[("country", "X\") } DELETE {")])).unwrap();
        assert!(
            to_sparql(&cs, 1).contains("\"X\\\") } DELETE {\""),
            "{}",
            to_sparql(&cs, 1)
        );
    }

    #[test]
    fn units() {
        let cs = parse(&constraints(&[("capacity", "10 TB"), ("price", "0.05")])).unwrap();
        let q = to_sparql(&cs, 5);
        assert!(q.contains(">= 10.0 * 1000000000000.0"), "{q}");
        assert!(q.contains("<= 0.05 * 1.0"), "{q}");
    }
}
