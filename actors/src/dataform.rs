//! XEP-0004 Data Forms: reading the fields of a submitted form and building forms to fill in or results, for the services that configure with them (pubsub node configuration, subscription options, publish-options).

use crate::element::Element;

pub const NS_DATA: &str = "jabber:x:data";

/// A form's type and its fields in order; a field has one value or several.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form {
    /// `form`, `submit`, `result` or `cancel`.
    pub kind: String,
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Field {
    pub var: String,
    /// `text-single`, `list-single`, `boolean`, `hidden`, … (empty when the submitter left it out).
    pub kind: String,
    pub label: Option<String>,
    pub values: Vec<String>,
    /// For list fields: the choices offered.
    pub options: Vec<String>,
}

impl Form {
    pub fn new(kind: &str) -> Form {
        Form {
            kind: kind.into(),
            fields: Vec::new(),
        }
    }

    /// The form in `parent`'s `<x xmlns='jabber:x:data'>` child, if any.
    pub fn find(parent: &Element) -> Option<Form> {
        parent.get_child("x", NS_DATA).map(Form::parse)
    }

    /// Reads an `<x xmlns='jabber:x:data'>` element.
    pub fn parse(x: &Element) -> Form {
        let fields = x
            .elements()
            .filter(|f| f.name == "field" && f.ns == NS_DATA)
            .map(|f| Field {
                var: f.get_attr("var").unwrap_or("").to_string(),
                kind: f.get_attr("type").unwrap_or("").to_string(),
                label: f.get_attr("label").map(str::to_string),
                values: f
                    .elements()
                    .filter(|v| v.name == "value")
                    .map(|v| v.text_content())
                    .collect(),
                options: f
                    .elements()
                    .filter(|o| o.name == "option")
                    .filter_map(|o| o.child_text("value", NS_DATA))
                    .collect(),
            })
            .collect();
        Form {
            kind: x.get_attr("type").unwrap_or("").to_string(),
            fields,
        }
    }

    /// The `FORM_TYPE` hidden field's value.
    pub fn form_type(&self) -> Option<&str> {
        self.value("FORM_TYPE")
    }

    /// The first value of field `var`.
    pub fn value(&self, var: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.var == var)
            .and_then(|f| f.values.first())
            .map(String::as_str)
    }

    /// All values of field `var` (list-multi, jid-multi, text-multi).
    pub fn values(&self, var: &str) -> Option<&[String]> {
        self.fields
            .iter()
            .find(|f| f.var == var)
            .map(|f| f.values.as_slice())
    }

    /// Adds the hidden `FORM_TYPE` field.
    pub fn with_type(self, form_type: &str) -> Form {
        self.field(Field::new("FORM_TYPE", "hidden").value(form_type))
    }

    pub fn field(mut self, f: Field) -> Form {
        self.fields.push(f);
        self
    }

    pub fn to_element(&self) -> Element {
        let mut x = Element::new("x", NS_DATA).attr("type", self.kind.clone());
        for f in &self.fields {
            let mut e = Element::new("field", NS_DATA).attr("var", f.var.clone());
            if !f.kind.is_empty() {
                e = e.attr("type", f.kind.clone());
            }
            if let Some(l) = &f.label {
                e = e.attr("label", l.clone());
            }
            for o in &f.options {
                e = e.child(
                    Element::new("option", NS_DATA)
                        .child(Element::new("value", NS_DATA).text(o.clone())),
                );
            }
            for v in &f.values {
                e = e.child(Element::new("value", NS_DATA).text(v.clone()));
            }
            x = x.child(e);
        }
        x
    }
}

/// A submitted field whose value cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {why}")]
pub struct FieldError {
    pub field: String,
    pub why: &'static str,
}

impl Field {
    /// The first value, or "" when there is none.
    pub fn first(&self) -> &str {
        self.values.first().map(String::as_str).unwrap_or("")
    }

    /// This field refused for `why`.
    pub fn refused(&self, why: &'static str) -> FieldError {
        FieldError {
            field: self.var.clone(),
            why,
        }
    }

    /// The value as a boolean (XEP-0004 §3.3).
    pub fn flag(&self) -> Result<bool, FieldError> {
        boolean(self.first()).ok_or_else(|| self.refused("not a boolean"))
    }

    /// The value as a count no higher than `limit` (`max` stands for the limit).
    pub fn count(&self, limit: usize) -> Result<usize, FieldError> {
        let n = match self.first() {
            "max" => limit,
            v => v.parse().map_err(|_| self.refused("not a number"))?,
        };
        if n > limit {
            return Err(self.refused("over the service's limit"));
        }
        Ok(n)
    }

    /// The value, which must be one of `choices`.
    pub fn choice(&self, choices: &[&str]) -> Result<String, FieldError> {
        let v = self.first();
        if choices.contains(&v) {
            Ok(v.to_string())
        } else {
            Err(self.refused("unknown choice"))
        }
    }

    pub fn new(var: &str, kind: &str) -> Field {
        Field {
            var: var.into(),
            kind: kind.into(),
            ..Field::default()
        }
    }

    pub fn label(mut self, l: &str) -> Field {
        self.label = Some(l.into());
        self
    }

    pub fn value(mut self, v: impl Into<String>) -> Field {
        self.values.push(v.into());
        self
    }

    pub fn options(mut self, o: &[&str]) -> Field {
        self.options = o.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// XEP-0004 §3.3: a boolean field's value.
pub fn boolean(v: &str) -> Option<bool> {
    match v {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_round_trips_and_reads_values() {
        let f = Form::new("form")
            .with_type("http://jabber.org/protocol/pubsub#node_config")
            .field(
                Field::new("pubsub#access_model", "list-single")
                    .options(&["open", "whitelist"])
                    .value("open"),
            )
            .field(Field::new("pubsub#max_items", "text-single").value("10"))
            .field(
                Field::new("pubsub#children", "text-multi")
                    .value("a")
                    .value("b"),
            );
        let back = Form::parse(&f.to_element());
        assert_eq!(back, f);
        assert_eq!(
            back.form_type(),
            Some("http://jabber.org/protocol/pubsub#node_config")
        );
        assert_eq!(back.value("pubsub#max_items"), Some("10"));
        assert_eq!(back.values("pubsub#children").unwrap(), ["a", "b"]);
        assert_eq!(back.value("missing"), None);
        assert_eq!(
            (boolean("1"), boolean("false"), boolean("yes")),
            (Some(true), Some(false), None)
        );
    }
}
