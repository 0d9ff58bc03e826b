//! The schema of `infra/cassandra/*.cql`, rendered for the configured
//! keyspace and replication and applied idempotently (`IF NOT EXISTS`).

use crate::CassandraError;

const KEYSPACE_CQL: &str = include_str!("../../../infra/cassandra/keyspace.cql");
const TABLES_CQL: &str = include_str!("../../../infra/cassandra/tables.cql");

/// The keyspace name the files are written for.
const FILE_KEYSPACE: &str = "salestrack";

/// A keyspace name Cassandra accepts unquoted: letters, digits and
/// underscores, starting with a letter, at most 48 characters.
pub fn check_keyspace(name: &str) -> Result<(), CassandraError> {
    let valid = name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(CassandraError::Config(format!(
            "keyspace {name:?}: use 1 to 48 letters, digits or underscores, starting with a letter"
        )))
    }
}

/// The statements to run, in order.
pub fn statements(keyspace: &str, replication: &str) -> Result<Vec<String>, CassandraError> {
    check_keyspace(keyspace)?;
    let replication = replication.trim();
    if !(replication.starts_with('{') && replication.ends_with('}')) {
        return Err(CassandraError::Config(format!(
            "replication {replication:?} is not a CQL map such as \
             {{'class': 'NetworkTopologyStrategy', 'dc1': 3}}"
        )));
    }
    let mut out = Vec::new();
    for statement in split(KEYSPACE_CQL) {
        if !statement.starts_with("CREATE KEYSPACE") {
            return Err(CassandraError::Config(format!(
                "keyspace.cql holds an unexpected statement: {statement}"
            )));
        }
        out.push(format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication} \
             AND durable_writes = true"
        ));
    }
    let qualifier = format!("{FILE_KEYSPACE}.");
    out.extend(
        split(TABLES_CQL)
            .into_iter()
            .map(|s| s.replace(&qualifier, &format!("{keyspace}."))),
    );
    Ok(out)
}

/// Statements of a CQL file: comments dropped, split on `;`, whitespace
/// collapsed.
fn split(file: &str) -> Vec<String> {
    let text: String = file
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    text.split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_render_for_another_keyspace_and_replication() {
        let statements = statements(
            "sales_test",
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        )
        .expect("render");
        assert_eq!(statements.len(), 6, "{statements:#?}");
        assert_eq!(
            statements[0],
            "CREATE KEYSPACE IF NOT EXISTS sales_test WITH replication = \
             {'class': 'SimpleStrategy', 'replication_factor': 1} AND durable_writes = true"
        );
        assert!(statements[1].starts_with("CREATE TABLE IF NOT EXISTS sales_test.events ("));
        assert!(statements[2].starts_with("CREATE TABLE IF NOT EXISTS sales_test.snapshots ("));
        assert!(statements[3].starts_with("CREATE TABLE IF NOT EXISTS sales_test.payments ("));
        assert!(
            statements[4].starts_with("CREATE TABLE IF NOT EXISTS sales_test.data_keys_by_id (")
        );
        assert!(statements[5].starts_with("CREATE TABLE IF NOT EXISTS sales_test.data_keys ("));
        assert!(
            statements.iter().all(|s| !s.contains("salestrack.")),
            "no statement left on the file's keyspace"
        );
    }

    #[test]
    fn a_keyspace_cql_would_misread_is_refused() {
        for bad in ["", "1abc", "sales-track", "a\"; DROP", &"k".repeat(49)] {
            assert!(check_keyspace(bad).is_err(), "{bad:?}");
        }
        assert!(statements("ok", "SimpleStrategy").is_err());
    }
}
