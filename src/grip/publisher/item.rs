//! The items the publisher sends, as the proxy's publish API takes them,
//! and their batching into requests under the proxy's size limit.

use serde_json::{Value, json};

/// The id line of a published event: the proxy's `build-id` filter
/// replaces it with each subscriber's own id vector.
pub(super) const ID_PLACEHOLDER: &str = "%I";
/// Items per publish request, at most.
pub(super) const BATCH_ITEMS: usize = 512;
/// Pushpin refuses bodies over 1,000,000 bytes; stay below with room.
const BATCH_BYTES: usize = 900_000;

/// Splits items into request bodies under the proxy's size limit.
pub(super) fn bodies(items: &[Value]) -> Vec<(String, Vec<usize>)> {
    let mut bodies = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut indexes = Vec::new();
    let mut size = 0;
    for (index, item) in items.iter().enumerate() {
        let text = item.to_string();
        if !current.is_empty() && size + text.len() + 16 > BATCH_BYTES {
            bodies.push((
                format!("{{\"items\":[{}]}}", current.join(",")),
                std::mem::take(&mut indexes),
            ));
            current.clear();
            size = 0;
        }
        size += text.len() + 1;
        current.push(text);
        indexes.push(index);
    }
    if !current.is_empty() {
        bodies.push((format!("{{\"items\":[{}]}}", current.join(",")), indexes));
    }
    bodies
}

/// A `hint`: the streams on `channel` fetch their next link.
pub(super) fn hint(channel: &str) -> Value {
    json!({ "channel": channel, "formats": {"http-stream": {"action": "hint"}} })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_stay_under_the_proxy_limit() {
        let big = "x".repeat(300_000);
        let items: Vec<Value> = (0..5)
            .map(|n| json!({ "channel": "c", "n": n, "pad": big }))
            .collect();
        let split = bodies(&items);
        assert!(split.len() >= 2);
        assert!(split.iter().all(|(body, _)| body.len() < 1_000_000));
        let indexes: Vec<usize> = split
            .iter()
            .flat_map(|(_, indexes)| indexes.clone())
            .collect();
        assert_eq!(indexes, [0, 1, 2, 3, 4], "order is kept");
    }
}
