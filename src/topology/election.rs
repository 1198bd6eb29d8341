//! Which node takes writes. Never two: when more than one node says it is
//! a primary, writes stop until one steps down or an operator confirms one.
//!
//! A node that was the writer and lost the role to a promoted node is
//! fenced: it is never written to again, even if it comes back claiming to
//! be primary (its WAL has forked from the new primary's), until it returns
//! as a replica.

use super::NodeId;

/// The writer as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Node(NodeId),
    /// No node may take writes now (all down, or only a fenced one left).
    None,
    /// Two nodes claim to be primary.
    SplitBrain(NodeId, NodeId),
}

/// What one node said in a round of checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Down, or not checked.
    Unknown,
    Primary,
    Replica,
}

#[derive(Debug, Clone)]
pub struct Election {
    writer: Option<NodeId>,
    fenced: Vec<bool>,
    /// Set by an operator: this node wins a split brain.
    confirmed: Option<NodeId>,
}

impl Election {
    /// `configured` is the config's primary, trusted until checks say otherwise.
    pub fn new(nodes: usize, configured: NodeId) -> Self {
        Self {
            writer: Some(configured),
            fenced: vec![false; nodes],
            confirmed: None,
        }
    }

    /// Before any check: the configured primary.
    pub fn initial(&self) -> Writer {
        self.writer.map_or(Writer::None, Writer::Node)
    }

    pub fn confirm(&mut self, node: NodeId) {
        self.confirmed = Some(node);
        if let Some(f) = self.fenced.get_mut(node) {
            *f = false;
        }
    }

    pub fn is_fenced(&self, node: NodeId) -> bool {
        self.fenced.get(node).copied().unwrap_or(false)
    }

    /// Decides the writer from one round of claims.
    pub fn decide(&mut self, claims: &[Claim]) -> Writer {
        for (i, c) in claims.iter().enumerate() {
            if *c == Claim::Replica {
                // Back as a replica: it follows someone; no longer a risk.
                if let Some(f) = self.fenced.get_mut(i) {
                    *f = false;
                }
            }
        }
        let mut claimants = claims
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == Claim::Primary)
            .map(|(i, _)| i);
        let (first, second) = (claimants.next(), claimants.next());
        match (first, second) {
            (Some(a), Some(b)) => match self.confirmed {
                Some(c) if claims.get(c) == Some(&Claim::Primary) => {
                    self.take(c);
                    Writer::Node(c)
                }
                _ => Writer::SplitBrain(a, b),
            },
            (Some(c), None) => {
                if self.writer == Some(c) {
                    return Writer::Node(c);
                }
                if self.is_fenced(c) {
                    return Writer::None;
                }
                self.take(c);
                Writer::Node(c)
            }
            _ => Writer::None,
        }
    }

    /// `node` becomes the writer; the one before it is fenced.
    fn take(&mut self, node: NodeId) {
        if let Some(old) = self.writer.filter(|&w| w != node) {
            if let Some(f) = self.fenced.get_mut(old) {
                *f = true;
            }
            if self.confirmed == Some(old) {
                self.confirmed = None;
            }
        }
        self.writer = Some(node);
    }
}

#[cfg(test)]
mod tests {
    use super::Claim::{Primary as P, Replica as R, Unknown as U};
    use super::*;

    #[test]
    fn promotion_moves_writes_and_fences_the_old_primary() {
        let mut e = Election::new(3, 0);
        assert_eq!(e.decide(&[P, R, R]), Writer::Node(0));
        assert_eq!(e.decide(&[U, R, R]), Writer::None);
        assert_eq!(e.decide(&[U, P, R]), Writer::Node(1));
        // The old primary returns still claiming the role: two claimants.
        assert_eq!(e.decide(&[P, P, R]), Writer::SplitBrain(0, 1));
        // The new primary dies: the fenced old one is still not trusted.
        assert_eq!(e.decide(&[P, U, R]), Writer::None);
        // It comes back as a replica, then may later be promoted again.
        assert_eq!(e.decide(&[R, P, R]), Writer::Node(1));
        assert_eq!(e.decide(&[P, U, R]), Writer::Node(0));
    }

    #[test]
    fn split_brain_until_one_steps_down_or_is_confirmed() {
        let mut e = Election::new(2, 0);
        assert_eq!(e.decide(&[P, P]), Writer::SplitBrain(0, 1));
        assert_eq!(e.decide(&[P, U]), Writer::Node(0));
        assert_eq!(e.decide(&[P, P]), Writer::SplitBrain(0, 1));
        e.confirm(1);
        assert_eq!(e.decide(&[P, P]), Writer::Node(1));
        assert!(e.is_fenced(0));
    }
}
