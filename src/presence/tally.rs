//! This process's own streams per channel: counted when a stream opens and
//! when it closes, never per event.

use std::collections::HashMap;

/// The streams of one channel that this process serves itself.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) streams: u64,
    /// Per user id: its streams here, and how many of them are named.
    pub(super) users: HashMap<String, (u32, u32)>,
}

impl Tally {
    pub(super) fn join(&mut self, user: Option<&str>, listed: bool) {
        self.streams += 1;
        if let Some(user) = user {
            let entry = self.users.entry(user.to_owned()).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += u32::from(listed);
        }
    }

    /// Returns whether the channel has no stream left. `listed` is what the
    /// leaving stream joined with.
    pub(super) fn leave(&mut self, user: Option<&str>, listed: bool) -> bool {
        self.streams = self.streams.saturating_sub(1);
        if let Some(user) = user
            && let Some(entry) = self.users.get_mut(user)
        {
            entry.0 -= 1;
            entry.1 = entry.1.saturating_sub(u32::from(listed));
            if entry.0 == 0 {
                self.users.remove(user);
            }
        }
        self.streams == 0
    }

    /// Whether the user is named: while any of its streams here is.
    pub(super) fn named(streams: &(u32, u32)) -> bool {
        streams.1 > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_counted_once_however_many_tabs() {
        let mut tally = Tally::default();
        tally.join(Some("ana"), true);
        tally.join(Some("ana"), false);
        tally.join(None, false);
        assert_eq!((tally.streams, tally.users.len()), (3, 1));
        assert!(!tally.leave(Some("ana"), true));
        assert_eq!(tally.users.len(), 1, "one tab of ana is still open");
        assert!(
            !Tally::named(&tally.users["ana"]),
            "the tab left open asked not to be named"
        );
        assert!(!tally.leave(Some("ana"), false));
        assert!(tally.users.is_empty());
        assert!(tally.leave(None, false));
    }
}
