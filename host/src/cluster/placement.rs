//! Rendezvous (highest random weight) hashing: each live node scores an
//! object by a hash of both names, and the highest score takes it. Every
//! node computes the same choice from the same list, objects spread
//! evenly, and a node joining or leaving changes the choice only for the
//! objects it wins or won.

use sha2::{Digest as _, Sha256};

/// The node of `nodes` (name, address) rendezvous hashing prefers for
/// object `id` of `class`.
pub fn preferred<'a>(
    nodes: &'a [(String, String)],
    class: &str,
    id: &str,
) -> Option<&'a (String, String)> {
    nodes.iter().max_by_key(|(node, _)| score(node, class, id))
}

/// A stable score (the same in every build and process): the first eight
/// bytes of SHA-256 over the names, separated so that no two triples
/// collide by concatenation, and the node name to break a tie.
fn score<'a>(node: &'a str, class: &str, id: &str) -> (u64, &'a str) {
    let mut hash = Sha256::new();
    for part in [node, class, id] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first), node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|name| (name.to_string(), format!("{name}:1")))
            .collect()
    }

    #[test]
    fn objects_spread_over_nodes_and_only_a_leaving_nodes_share_moves() {
        let three = nodes(&["a", "b", "c"]);
        let two = nodes(&["a", "c"]);
        let mut counts = std::collections::BTreeMap::new();
        for object in 0..3000 {
            let id = format!("{object:x}");
            let (node, _) = preferred(&three, "counter", &id).expect("a node");
            *counts.entry(node.clone()).or_insert(0) += 1;
            let (after, _) = preferred(&two, "counter", &id).expect("a node");
            if node != "b" {
                assert_eq!(after, node, "an object of a staying node moved");
            }
        }
        // 1,000 each on average; a third ± 10% is far outside chance.
        for (node, count) in counts {
            assert!((900..=1100).contains(&count), "{node}: {count}");
        }
    }

    #[test]
    fn no_nodes_no_choice() {
        assert_eq!(preferred(&[], "counter", "x"), None);
    }
}
