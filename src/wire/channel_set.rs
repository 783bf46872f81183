//! A set of a stream's channels, each named by its index in the stream's
//! sorted channel list: which ones overflowed their inbox, are behind and
//! read from storage, or are live-only.
//!
//! A stream has at most 64 channels (`MAX_CHANNEL_LIMIT`), so the set is one
//! word: cheap to copy into an inbox and to keep in an atomic.

/// Channels of one stream, by index (0 to 63).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChannelSet(u64);

impl ChannelSet {
    /// The set of channel `index` alone.
    #[cfg(test)]
    pub(crate) fn of(index: usize) -> ChannelSet {
        ChannelSet(bit(index))
    }

    /// The set as one word, for an atomic.
    pub(crate) fn bits(self) -> u64 {
        self.0
    }

    /// The set an atomic held.
    pub(crate) fn from_bits(bits: u64) -> ChannelSet {
        ChannelSet(bits)
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn contains(self, index: usize) -> bool {
        self.0 & bit(index) != 0
    }

    pub(crate) fn insert(&mut self, index: usize) {
        self.0 |= bit(index);
    }

    pub(crate) fn remove(&mut self, index: usize) {
        self.0 &= !bit(index);
    }

    /// Adds every channel of `other`.
    pub(crate) fn extend(&mut self, other: ChannelSet) {
        self.0 |= other.0;
    }

    /// The lowest index in the set.
    pub(crate) fn first(self) -> Option<usize> {
        (!self.is_empty()).then(|| self.0.trailing_zeros() as usize)
    }
}

impl FromIterator<usize> for ChannelSet {
    fn from_iter<I: IntoIterator<Item = usize>>(indexes: I) -> Self {
        let mut set = ChannelSet::default();
        for index in indexes {
            set.insert(index);
        }
        set
    }
}

fn bit(index: usize) -> u64 {
    debug_assert!(index < 64, "a stream has at most 64 channels");
    1 << index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_of_indexes() {
        let mut set: ChannelSet = [3, 0].into_iter().collect();
        assert!(set.contains(0) && set.contains(3) && !set.contains(1));
        assert_eq!(set.first(), Some(0));
        set.remove(0);
        assert_eq!(set.first(), Some(3));
        set.extend(ChannelSet::of(63));
        assert_eq!(ChannelSet::from_bits(set.bits()), set);
        set.remove(3);
        set.remove(63);
        assert!(set.is_empty());
        assert_eq!(set.first(), None);
    }
}
