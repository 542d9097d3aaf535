//! `infra/template.yaml` as data, for the template's tests: [`template`] parses it (CloudFormation
//! short forms such as `!Sub` become YAML tags, see [`tagged`]) and [`Stack::resolve`] evaluates a
//! part of it the way CloudFormation would for one stack, so a test can run a function with the
//! environment and the IAM policy the template gives it.
//!
//! ```
//! use sluice_infra::{Stack, template};
//!
//! let t = template();
//! let stack = Stack::new(&t)
//!     .value("LakeBucket.Arn", "arn:aws:s3:::lake")
//!     .value("IngestLogGroup.Arn", "arn:aws:logs:us-east-1:123456789012:log-group:i")
//!     .value("ApiCredentialsSecretArn", "arn:aws:secretsmanager:us-east-1:123456789012:secret:api");
//! let policy = stack.role_policy("IngestRole").unwrap();
//! assert!(policy.to_string().contains("arn:aws:s3:::lake/raw/*"));
//! ```

use std::collections::BTreeMap;

use serde_json::Value as Json;
use serde_yaml_ng::Value;

/// `infra/template.yaml`, parsed.
pub fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
    let text = std::fs::read_to_string(path).expect("infra/template.yaml is readable");
    serde_yaml_ng::from_str(&text).expect("infra/template.yaml is YAML")
}

/// `!Tag value` → (tag, value); plain values → ("", value).
pub fn tagged(v: &Value) -> (String, &Value) {
    match v {
        Value::Tagged(t) => (
            t.tag.to_string().trim_start_matches('!').to_owned(),
            &t.value,
        ),
        other => (String::new(), other),
    }
}

/// One stack of the template: the values of the parameters, attributes and pseudo parameters
/// that a part of it refers to, and the conditions' outcomes. A parameter without a value takes
/// its `Default`.
#[derive(Debug, Clone)]
pub struct Stack<'t> {
    template: &'t Value,
    values: BTreeMap<String, String>,
    conditions: BTreeMap<String, bool>,
}

impl<'t> Stack<'t> {
    /// A stack with no values yet, in us-east-1 of account 123456789012, in partition `aws`.
    pub fn new(template: &'t Value) -> Self {
        let stack = Stack {
            template,
            values: BTreeMap::new(),
            conditions: BTreeMap::new(),
        };
        stack
            .value("AWS::Partition", "aws")
            .value("AWS::Region", "us-east-1")
            .value("AWS::AccountId", "123456789012")
    }

    /// `name` (a parameter, a resource's `Ref`, or `Resource.Attribute`) is `value`.
    pub fn value(mut self, name: &str, value: impl Into<String>) -> Self {
        self.values.insert(name.to_owned(), value.into());
        self
    }

    /// Condition `name` is `holds`.
    pub fn condition(mut self, name: &str, holds: bool) -> Self {
        self.conditions.insert(name.to_owned(), holds);
        self
    }

    /// The policy document of role `role` (its one inline policy), resolved.
    pub fn role_policy(&self, role: &str) -> Result<Json, String> {
        let policies = &self.template["Resources"][role]["Properties"]["Policies"];
        let doc = &policies[0]["PolicyDocument"];
        self.resolve(doc)?
            .ok_or_else(|| format!("{role} has no policy document"))
    }

    /// The environment variables of function `function`, resolved (a variable that resolves to
    /// `AWS::NoValue` is left out).
    pub fn environment(&self, function: &str) -> Result<BTreeMap<String, String>, String> {
        let vars = &self.template["Resources"][function]["Properties"]["Environment"]["Variables"];
        let Some(Json::Object(vars)) = self.resolve(vars)? else {
            return Err(format!("{function} has no environment variables"));
        };
        vars.into_iter()
            .map(|(k, v)| match v {
                Json::String(s) => Ok((k, s)),
                other => Err(format!("{function}: {k} is {other}, not a string")),
            })
            .collect()
    }

    /// `v` evaluated: `!Ref`, `!GetAtt`, `!Sub` and `!If` replaced by what they name; `None`
    /// for `AWS::NoValue`. Scalars become strings, as CloudFormation passes them.
    pub fn resolve(&self, v: &Value) -> Result<Option<Json>, String> {
        let (tag, inner) = tagged(v);
        match tag.as_str() {
            "" => self.resolve_plain(inner),
            "Ref" if inner.as_str() == Some("AWS::NoValue") => Ok(None),
            "Ref" => self.lookup(scalar(inner)?.as_str()).map(some_string),
            "GetAtt" => {
                let name = match inner {
                    Value::Sequence(parts) => parts
                        .iter()
                        .map(scalar)
                        .collect::<Result<Vec<_>, _>>()?
                        .join("."),
                    other => scalar(other)?,
                };
                self.lookup(&name).map(some_string)
            }
            "Sub" => self.substitute(&scalar(inner)?).map(some_string),
            "If" => {
                let [cond, then, otherwise] = inner.as_sequence().map(Vec::as_slice).unwrap_or(&[])
                else {
                    return Err(format!("!If takes three items: {inner:?}"));
                };
                let cond = scalar(cond)?;
                match self.conditions.get(&cond) {
                    Some(true) => self.resolve(then),
                    Some(false) => self.resolve(otherwise),
                    None => Err(format!("condition {cond} has no outcome in this stack")),
                }
            }
            other => Err(format!("!{other} is not supported here")),
        }
    }

    fn resolve_plain(&self, v: &Value) -> Result<Option<Json>, String> {
        Ok(Some(match v {
            Value::Mapping(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    if let Some(v) = self.resolve(v)? {
                        out.insert(scalar(k)?, v);
                    }
                }
                Json::Object(out)
            }
            Value::Sequence(xs) => {
                let mut out = Vec::new();
                for x in xs {
                    out.extend(self.resolve(x)?);
                }
                Json::Array(out)
            }
            Value::Null => Json::Null,
            scalar_value => Json::String(scalar(scalar_value)?),
        }))
    }

    /// `${Name}` in `text` replaced by the value of `Name`.
    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in !Sub {text:?}"))?;
            out.push_str(&rest[..start]);
            out.push_str(&self.lookup(&rest[start + 2..start + end])?);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&self, name: &str) -> Result<String, String> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        let default = &self.template["Parameters"][name]["Default"];
        if !default.is_null() {
            return scalar(default);
        }
        Err(format!("{name} has no value in this stack"))
    }
}

fn some_string(s: String) -> Option<Json> {
    Some(Json::String(s))
}

fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("not a scalar: {other:?}")),
    }
}
