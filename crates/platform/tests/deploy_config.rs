//! Every deployment file sets only settings the code reads, with values it
//! accepts: the SAM template's function environments, the compose runner's
//! environment and the Dockerfile's ENV. `Settings` rejects unknown
//! `SALESTRACK_*` names, so a typo there would stop the process at start.
//! The Grafana dashboard charts only metrics the code records.

use figment::Jail;
use salestrack_platform::Settings;
use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn repo_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        // `!Sub "..."` / `!Ref Name`: the text, as good a value as any for
        // checking that the name is a setting and the kind of value fits.
        Value::Tagged(t) => scalar(&t.value),
        other => panic!("not a plain value: {other:?}"),
    }
}

/// Every `Environment: {Variables: {...}}` map anywhere in the template. A
/// `!Ref` to a parameter stands for the parameter's default.
fn template_environments(v: &Value, params: &Value, found: &mut Vec<BTreeMap<String, String>>) {
    let value = |v: &Value| match v {
        Value::Tagged(t) if t.tag == "Ref" => {
            let name = scalar(&t.value);
            match params.get(&name).and_then(|p| p.get("Default")) {
                Some(default) => scalar(default),
                None => name,
            }
        }
        other => scalar(other),
    };
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                if k.as_str() == Some("Environment") {
                    if let Some(vars) = child.get("Variables").and_then(Value::as_mapping) {
                        found.push(vars.iter().map(|(k, v)| (scalar(k), value(v))).collect());
                    }
                }
                template_environments(child, params, found);
            }
        }
        Value::Sequence(s) => s
            .iter()
            .for_each(|c| template_environments(c, params, found)),
        Value::Tagged(t) => template_environments(&t.value, params, found),
        _ => {}
    }
}

fn dockerfile_env() -> BTreeMap<String, String> {
    let text = repo_file("Dockerfile").replace("\\\n", " ");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Loads `Settings` with exactly these variables set; the error names the bad one.
// figment's Jail fixes the closure's error type.
#[allow(clippy::result_large_err)]
fn load(source: &str, vars: &BTreeMap<String, String>) -> Settings {
    let mut loaded = None;
    Jail::expect_with(|jail| {
        jail.clear_env();
        for (name, value) in vars.iter().filter(|(k, _)| k.starts_with("SALESTRACK_")) {
            jail.set_env(name, value);
        }
        loaded = Some(Settings::from_env().map_err(|e| format!("{source}: {e}"))?);
        Ok(())
    });
    loaded.expect("loaded")
}

#[test]
fn the_sam_template_sets_only_settings_the_functions_read() {
    let template = yaml("infra/aws/template.yaml");
    let params = &template["Parameters"];
    let mut globals = Vec::new();
    template_environments(&template["Globals"], params, &mut globals);
    let [globals] = globals.as_slice() else {
        panic!("one global function environment: {globals:?}");
    };
    let mut functions = Vec::new();
    template_environments(&template["Resources"], params, &mut functions);
    // SAM merges a function's variables over the global ones.
    let mut merged = vec![globals.clone()];
    merged.extend(functions.into_iter().map(|mut env| {
        let mut all = globals.clone();
        all.append(&mut env);
        all
    }));
    assert!(merged.len() > 1, "functions add their own variables");
    for env in merged {
        let settings = load("infra/aws/template.yaml", &env);
        assert!(
            settings.data_dir.starts_with("/tmp"),
            "Lambda can only write under /tmp"
        );
    }
}

/// The IAM actions a function's role statements allow, with the resources
/// (as text) each is allowed on.
fn allowed(function: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for policy in function["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for statement in policy["Statement"].as_sequence().into_iter().flatten() {
            let resources = format!("{:?}", statement["Resource"]);
            for action in statement["Action"].as_sequence().into_iter().flatten() {
                out.push((scalar(action), resources.clone()));
            }
        }
    }
    out
}

/// Issue 29: every function held the same Keyspaces credentials and the
/// OpenSearch master user, as plain environment variables, and the live
/// streams could take the account's concurrency. Now: no credentials in any
/// environment; each function's role reads its own secret only; the query
/// functions read and never write; streams have their own reserved
/// concurrency; each Keyspaces user holds only its function's rights.
#[test]
fn each_function_holds_only_its_own_secret_and_rights() {
    let template = yaml("infra/aws/template.yaml");
    let resources = &template["Resources"];
    let text = repo_file("infra/aws/template.yaml");
    for name in ["USERNAME", "PASSWORD"] {
        assert!(
            !text.contains(&format!("_{name}:")),
            "a credential in a function's environment: SALESTRACK_*_{name}"
        );
    }
    let functions = [
        ("CommandFunction", "CommandSecretArn"),
        ("QueryFunction", "QuerySecretArn"),
        ("LiveFunction", "QuerySecretArn"),
        ("DomainFunction", "DomainSecretArn"),
        ("ProjectorFunction", "ProjectorSecretArn"),
        ("PaymentFunction", "PaymentSecretArn"),
    ];
    for (function, secret) in functions {
        let f = &resources[function];
        let env = &f["Properties"]["Environment"]["Variables"];
        assert_eq!(
            env.get("SALESTRACK_SECRET_ARN").map(scalar).as_deref(),
            Some(secret),
            "{function} reads {secret}"
        );
        let reads: Vec<_> = allowed(f)
            .into_iter()
            .filter(|(action, _)| action.starts_with("secretsmanager:"))
            .collect();
        assert_eq!(reads.len(), 1, "{function}: {reads:?}");
        assert_eq!(reads[0].0, "secretsmanager:GetSecretValue", "{function}");
        assert!(reads[0].1.contains(secret), "{function}: {reads:?}");
    }
    for function in ["QueryFunction", "LiveFunction"] {
        for (action, _) in allowed(&resources[function]) {
            assert!(
                matches!(
                    action.as_str(),
                    "cassandra:Select" | "secretsmanager:GetSecretValue"
                ),
                "{function} may {action}: the query functions only read"
            );
        }
    }
    assert!(
        matches!(
            &resources["LiveFunction"]["Properties"]["ReservedConcurrentExecutions"],
            Value::Tagged(t) if scalar(&t.value) == "LiveStreamsConcurrency"
        ),
        "the live streams' concurrency is reserved (a parameter)"
    );
    assert_eq!(
        scalar(&resources["LiveFunction"]["Properties"]["FunctionUrlConfig"]["InvokeMode"]),
        "RESPONSE_STREAM"
    );
    assert!(
        resources["QueryFunction"]["Properties"]["FunctionUrlConfig"]
            .get("InvokeMode")
            .is_none(),
        "the other reads do not hold an execution for a stream's lifetime"
    );
    for (user, may_modify) in [
        ("CommandKeyspacesUser", true),
        ("QueryKeyspacesUser", false),
        ("ProjectorKeyspacesUser", false),
        ("DomainKeyspacesUser", true),
        ("PaymentKeyspacesUser", true),
    ] {
        let policies = format!("{:?}", resources[user]["Properties"]["Policies"]);
        assert!(policies.contains("cassandra:Select"), "{user}");
        assert_eq!(policies.contains("cassandra:Modify"), may_modify, "{user}");
    }
}

#[test]
fn the_compose_runner_environment_is_what_the_runner_reads() {
    let compose = yaml("docker-compose.yml");
    let env = compose["services"]["runner"]["environment"]
        .as_mapping()
        .expect("runner environment");
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (scalar(k), scalar(v))).collect();
    let settings = load("docker-compose.yml", &env);
    assert_eq!(
        settings.http.addr.ip().to_string(),
        "0.0.0.0",
        "reachable from other containers"
    );
    let port = compose["services"]["runner"]["ports"][0]
        .as_str()
        .expect("port mapping");
    assert!(
        port.ends_with(&format!(":{}", settings.http.addr.port())),
        "{port} maps the port the runner listens on"
    );
}

#[test]
fn the_dockerfile_environment_is_what_the_runner_reads() {
    let env = dockerfile_env();
    assert!(env.contains_key("SALESTRACK_HTTP_ADDR"), "{env:?}");
    load("Dockerfile", &env);
}

#[test]
fn an_unknown_variable_is_caught_by_this_check() {
    let env = BTreeMap::from([("SALESTRACK_KAFKA_BROKER".to_string(), "x:9092".to_string())]);
    let failed = std::panic::catch_unwind(|| load("test", &env));
    assert!(failed.is_err(), "a misspelt name must be rejected");
}

/// (name, type) of each column of `salestrack.{table}` in the CQL schema.
fn cql_columns(table: &str) -> Vec<(String, String)> {
    let cql = repo_file("infra/cassandra/tables.cql");
    let body = cql
        .split_once(&format!("CREATE TABLE IF NOT EXISTS salestrack.{table} ("))
        .unwrap_or_else(|| panic!("table {table}"))
        .1;
    body.lines()
        .map(|l| l.split("--").next().unwrap_or("").trim())
        .take_while(|l| !l.starts_with("PRIMARY KEY"))
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.trim_end_matches(',').split_whitespace();
            let name = parts.next().expect("name").to_owned();
            (name, parts.next().expect("type").to_owned())
        })
        .collect()
}

/// (name, type) of each column of a `AWS::Cassandra::Table` resource.
fn template_columns(template: &Value, resource: &str) -> Vec<(String, String)> {
    let table = &template["Resources"][resource]["Properties"];
    let column = |c: &Value| (scalar(&c["ColumnName"]), scalar(&c["ColumnType"]));
    let mut declared: Vec<(String, String)> = Vec::new();
    let list = |key: &str| table[key].as_sequence().cloned().unwrap_or_default();
    declared.extend(list("PartitionKeyColumns").iter().map(column));
    declared.extend(
        list("ClusteringKeyColumns")
            .iter()
            .map(|c| column(&c["Column"])),
    );
    declared.extend(list("RegularColumns").iter().map(column));
    declared
}

#[test]
fn the_keyspaces_tables_in_the_template_match_the_cql_schema() {
    let template = yaml("infra/aws/template.yaml");
    for (resource, table, at_least) in [
        ("EventsTable", "events", 8),
        ("SnapshotsTable", "snapshots", 4),
        ("PaymentsTable", "payments", 4),
        ("DataKeysByIdTable", "data_keys_by_id", 3),
        ("DataKeysTable", "data_keys", 2),
    ] {
        let mut declared = template_columns(&template, resource);
        let mut expected = cql_columns(table);
        assert!(expected.len() >= at_least, "{table}: {expected:?}");
        declared.sort();
        expected.sort();
        assert_eq!(declared, expected, "{resource} against salestrack.{table}");
    }
}

/// Every Rust source of the workspace, as one text.
fn rust_sources() -> String {
    fn walk(dir: &std::path::Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && name != ".git" {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        &mut out,
    );
    out
}

#[test]
fn the_grafana_dashboard_charts_only_metrics_the_code_records() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("infra/grafana/dashboards/salestrack.json"))
            .expect("dashboard JSON");
    let sources = rust_sources();
    let mut charted = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if let Some(name) = word.strip_prefix("salestrack_") {
                    let base = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(name);
                    charted.insert(format!("salestrack_{base}"));
                }
            }
        }
    }
    assert!(charted.len() >= 10, "{charted:?}");
    for metric in &charted {
        assert!(
            sources.contains(&format!("\"{metric}\"")),
            "the dashboard charts {metric}, which no code records"
        );
    }
}
