//! This process's own streams per channel: counted when a stream opens and
//! when it closes, never per event.

use std::collections::HashMap;

/// The streams of one channel that this process serves itself.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) streams: u64,
    /// Per user id: its streams here, and whether it is named.
    pub(super) users: HashMap<String, (u32, bool)>,
}

impl Tally {
    pub(super) fn join(&mut self, user: Option<&str>, listed: bool) {
        self.streams += 1;
        if let Some(user) = user {
            let entry = self.users.entry(user.to_owned()).or_insert((0, listed));
            entry.0 += 1;
            // Named if any of the user's streams says so.
            entry.1 |= listed;
        }
    }

    /// Returns whether the channel has no stream left.
    pub(super) fn leave(&mut self, user: Option<&str>) -> bool {
        self.streams = self.streams.saturating_sub(1);
        if let Some(user) = user
            && let Some(entry) = self.users.get_mut(user)
        {
            entry.0 -= 1;
            if entry.0 == 0 {
                self.users.remove(user);
            }
        }
        self.streams == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_counted_once_however_many_tabs() {
        let mut tally = Tally::default();
        tally.join(Some("ana"), true);
        tally.join(Some("ana"), true);
        tally.join(None, false);
        assert_eq!((tally.streams, tally.users.len()), (3, 1));
        assert!(!tally.leave(Some("ana")));
        assert_eq!(tally.users.len(), 1, "one tab of ana is still open");
        assert!(!tally.leave(Some("ana")));
        assert!(tally.users.is_empty());
        assert!(tally.leave(None));
    }
}
