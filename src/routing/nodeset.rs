//! A set of a topology's nodes, by node id: the nodes a tenant may use, the
//! nodes in the proxy's region. A database has at most [`NodeSet::MAX`]
//! nodes; a bit each keeps the set `Copy` and its checks free on the hot
//! path.

use crate::topology::NodeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeSet(u32);

impl NodeSet {
    /// Node ids at or above this are in no set (and a topology never has them).
    pub const MAX: usize = 32;
    /// Every node: no restriction.
    pub const ALL: NodeSet = NodeSet(u32::MAX);
    pub const EMPTY: NodeSet = NodeSet(0);

    pub fn contains(self, id: NodeId) -> bool {
        id < Self::MAX && self.0 & (1 << id) != 0
    }

    /// This set and node `id` (ignored beyond [`NodeSet::MAX`]).
    #[must_use]
    pub fn with(self, id: NodeId) -> NodeSet {
        match id < Self::MAX {
            true => NodeSet(self.0 | (1 << id)),
            false => self,
        }
    }

    /// The nodes in both sets.
    #[must_use]
    pub fn and(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 & other.0)
    }

    /// True for [`NodeSet::ALL`], the set that restricts nothing.
    pub fn is_all(self) -> bool {
        self == Self::ALL
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many nodes the set holds.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The ids in the set, ascending: one step per member, found by its bit.
    pub fn ids(self) -> impl Iterator<Item = NodeId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let id = bits.trailing_zeros() as NodeId;
            bits &= bits.wrapping_sub(1);
            (id < Self::MAX).then_some(id)
        })
    }

    /// The ids in the set below `n` (a topology's node count), ascending.
    pub fn ids_below(self, n: usize) -> impl Iterator<Item = NodeId> {
        let below = match n < Self::MAX {
            true => (1u32 << n) - 1,
            false => u32::MAX,
        };
        NodeSet(self.0 & below).ids()
    }
}

impl FromIterator<NodeId> for NodeSet {
    fn from_iter<I: IntoIterator<Item = NodeId>>(ids: I) -> Self {
        ids.into_iter().fold(NodeSet::EMPTY, NodeSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_put_in_and_nothing_beyond_the_limit() {
        let s: NodeSet = [0, 3, 40].into_iter().collect();
        assert!(s.contains(0) && s.contains(3));
        assert!(!s.contains(1) && !s.contains(40));
        assert!(!NodeSet::ALL.contains(40));
        assert!(NodeSet::ALL.contains(31) && NodeSet::ALL.is_all());
        assert_eq!(s.ids_below(4).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(s.ids_below(3).collect::<Vec<_>>(), [0]);
        assert_eq!(s.ids_below(0).count(), 0);
        assert_eq!(NodeSet::ALL.ids_below(40).count(), NodeSet::MAX);
        assert_eq!(NodeSet::ALL.ids_below(40).last(), Some(31));
        assert_eq!(
            (s.len(), NodeSet::ALL.len(), NodeSet::EMPTY.len()),
            (2, 32, 0)
        );
        assert!(NodeSet::EMPTY.is_empty() && !s.is_empty());
        let t: NodeSet = [3, 4].into_iter().collect();
        assert_eq!(s.and(t).ids_below(8).collect::<Vec<_>>(), [3]);
    }
}
