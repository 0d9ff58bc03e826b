//! What sealing personal data costs per order, measured in-process beside
//! the bench's end-to-end figures: the key-store read and the sealing the
//! command function adds to each order, and the key read and the opening
//! every answer adds (`salestrack_core::personal`). The end-to-end phases
//! already run with both; this says how much of their CPU per order it is.

use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::personal::{self, PersonalField};
use salestrack_core::ports::{key_store, KeyStore};
use salestrack_embedded::EmbeddedKeyStore;

/// Microseconds of the process's CPU per order (every thread: the key
/// store's reads run on blocking threads), measured while the bench runs
/// nothing else.
#[derive(Debug, Clone, Copy)]
pub struct PersonalCost {
    /// The command function's share: the user's key read from the embedded
    /// key store, and the order's three fields sealed.
    pub seal_us: f64,
    /// The query function's share for a cart of one line: the key read by
    /// id, and the cart's sealed fields opened.
    pub open_us: f64,
}

/// CPU time of this process, in seconds.
fn process_cpu() -> f64 {
    // /proc/self/stat: utime and stime, fields 14 and 15, in ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the line are 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `orders` rounds of each, one after the other, on a fresh embedded
/// key store.
pub async fn measure(orders: usize) -> anyhow::Result<PersonalCost> {
    let dir = tempfile::tempdir()?;
    let keys = EmbeddedKeyStore::open(&dir.path().join("keys.sqlite"))?;
    let users: Vec<String> = (0..64).map(|n| format!("bench-user-{n}")).collect();
    let mut lines = Vec::with_capacity(orders);
    let cpu = process_cpu();
    for n in 0..orders {
        let mut line = salestrack_core::testing::line();
        line.user_id = users[n % users.len()].clone();
        line.cart_id = CartId(uuid::Uuid::from_u128(n as u128));
        line.order_id = OrderId(uuid::Uuid::from_u128(n as u128));
        let key = keys.sealing_key(&line.user_id).await?;
        personal::seal_line(&mut line, &key);
        lines.push(line);
    }
    let seal = per_order(cpu, orders);
    let cpu = process_cpu();
    for line in &lines {
        let mut answer = serde_json::json!({
            "shipping_address": line.shipping_address,
            "billing_address": line.billing_address,
            "payment_method": line.payment_method,
            "items": [{ "payment_method": line.payment_method }],
        });
        key_store::open_sealed(&mut answer, &keys).await?;
        anyhow::ensure!(
            answer[PersonalField::ShippingAddress.as_str()] != personal::ERASED,
            "a sealed field did not open"
        );
    }
    let open = per_order(cpu, orders);
    Ok(PersonalCost {
        seal_us: seal,
        open_us: open,
    })
}

/// Microseconds of CPU per order since `cpu`.
fn per_order(cpu: f64, orders: usize) -> f64 {
    (process_cpu() - cpu) * 1e6 / orders as f64
}
