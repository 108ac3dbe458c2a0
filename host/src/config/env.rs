//! Configuration from the environment, for containers: every key of `gateway.toml` and
//! `providers.toml` can be set by a variable named after its path, with `__` between levels:
//!
//! - `AIGW_ROUTING__DEFAULT_POLICY=cost` sets `[routing] default_policy` in gateway.toml;
//! - `AIGW_PROVIDERS__OPENAI__ENABLED=false` sets `[openai] enabled` in providers.toml.
//!
//! A value is read as a TOML value when it is one (`5`, `true`, `["a", "b"]`, `"text"`) and as a
//! plain string otherwise (`0.0.0.0:8080`). Overrides go through the same strict parsing as the
//! files, so a misspelt variable is an unknown-field error, not a silent no-op. Variables
//! without `__` (`AIGW_CONFIG`, `AIGW_LOG`, ...) are the command line's, not config keys.

use toml::{Table, Value};

const PREFIX: &str = "AIGW_";
const SEPARATOR: &str = "__";
/// The first path segment that sends an override to providers.toml instead of gateway.toml.
const PROVIDERS_SECTION: &str = "providers";

/// One `AIGW_*__*` variable: which file, where in it, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The variable's name, for messages (its value may be a secret and is never shown).
    pub variable: String,
    pub target: Target,
    pub path: Vec<String>,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Gateway,
    Providers,
}

/// The overrides in `vars` (normally `std::env::vars()`), sorted by name so they apply in the
/// same order every time.
pub fn overrides(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut found: Vec<Override> = vars
        .into_iter()
        .filter_map(|(variable, raw)| {
            let rest = variable.strip_prefix(PREFIX)?;
            if !rest.contains(SEPARATOR) {
                return None;
            }
            let mut path: Vec<String> = rest
                .split(SEPARATOR)
                .map(|segment| segment.to_ascii_lowercase())
                .collect();
            if path.iter().any(String::is_empty) {
                return None;
            }
            let target = if path[0] == PROVIDERS_SECTION {
                path.remove(0);
                Target::Providers
            } else {
                Target::Gateway
            };
            Some(Override {
                value: parse_value(&raw),
                variable,
                target,
                path,
            })
        })
        .collect();
    found.sort_by(|a, b| a.variable.cmp(&b.variable));
    found
}

fn parse_value(raw: &str) -> Value {
    format!("value = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// Sets every override for `target` in `table`, creating tables on the way. Returns the names
/// of the variables applied, or the first one whose path runs into a non-table value.
pub fn apply(
    table: &mut Table,
    overrides: &[Override],
    target: Target,
) -> Result<Vec<String>, String> {
    let mut applied = Vec::new();
    for o in overrides.iter().filter(|o| o.target == target) {
        let Some((last, parents)) = o.path.split_last() else {
            continue;
        };
        let mut current = &mut *table;
        for segment in parents {
            let entry = current
                .entry(segment.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            current = entry.as_table_mut().ok_or_else(|| {
                format!(
                    "{}: '{segment}' is not a table in the configuration, so it has no keys to set",
                    o.variable
                )
            })?;
        }
        current.insert(last.clone(), o.value.clone());
        applied.push(o.variable.clone());
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables_map_to_paths_values_and_files() {
        let found = overrides(vars(&[
            ("AIGW_SERVER__LISTEN", "0.0.0.0:9000"),
            ("AIGW_ROUTING__MAX_ATTEMPTS", "5"),
            ("AIGW_MCP__ALLOWED_HOSTS", r#"["*"]"#),
            ("AIGW_PROVIDERS__OPENAI__ENABLED", "false"),
            ("AIGW_CONFIG", "/etc/aigw"),
            ("AIGW_BROKEN__", "x"),
            ("PATH", "/bin"),
        ]));
        let by_name = |name: &str| found.iter().find(|o| o.variable == name).cloned();
        assert_eq!(found.len(), 4);
        let listen = by_name("AIGW_SERVER__LISTEN").unwrap();
        assert_eq!(listen.path, ["server", "listen"]);
        assert_eq!(listen.value, Value::String("0.0.0.0:9000".into()));
        assert_eq!(
            by_name("AIGW_ROUTING__MAX_ATTEMPTS").unwrap().value,
            Value::Integer(5)
        );
        assert_eq!(
            by_name("AIGW_MCP__ALLOWED_HOSTS").unwrap().value,
            Value::Array(vec![Value::String("*".into())])
        );
        let openai = by_name("AIGW_PROVIDERS__OPENAI__ENABLED").unwrap();
        assert_eq!(openai.target, Target::Providers);
        assert_eq!(openai.path, ["openai", "enabled"]);
        assert_eq!(openai.value, Value::Boolean(false));
    }

    #[test]
    fn apply_creates_tables_and_refuses_to_descend_into_values() {
        let mut table: Table = "[server]\nlisten = \"127.0.0.1:1\"\n".parse().unwrap();
        let found = overrides(vars(&[
            ("AIGW_SERVER__LISTEN", "0.0.0.0:2"),
            ("AIGW_ROUTING__DEFAULT_POLICY", "cost"),
        ]));
        let applied = apply(&mut table, &found, Target::Gateway).unwrap();
        assert_eq!(applied.len(), 2);
        assert_eq!(table["server"]["listen"].as_str(), Some("0.0.0.0:2"));
        assert_eq!(table["routing"]["default_policy"].as_str(), Some("cost"));

        let deeper = overrides(vars(&[("AIGW_SERVER__LISTEN__PORT", "1")]));
        let error = apply(&mut table, &deeper, Target::Gateway).unwrap_err();
        assert!(error.contains("AIGW_SERVER__LISTEN__PORT"), "{error}");
    }
}
