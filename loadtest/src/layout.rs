//! Which users are in which chats.
//!
//! Users are numbered `0..connections`. With one chat per user (layer 0),
//! each group is `group_size` consecutive users, as every run before the
//! twenty-sixth session had. More chats per user add layers: each layer
//! partitions the users into groups again, so every user is in exactly one
//! chat of each layer and every chat has `group_size` members. Layer `l`
//! puts user `g * group_size + i` (member `i` of layer 0's group `g`) into
//! group `(g + i * l) mod groups`, which mixes members of different layer-0
//! groups (and so of different agents) while keeping the members of each
//! group distinct: two users of one group differ in `i`.
//!
//! Chat index `c` is layer `c / groups`'s group `c % groups`; the
//! coordinator creates the chats in that order, so `AgentSpec::chats[c]` is
//! its id.

#[derive(Debug, Clone, Copy)]
pub struct Layout {
    connections: usize,
    group_size: usize,
    /// Groups per layer.
    groups: usize,
    layers: usize,
}

impl Layout {
    pub fn new(connections: usize, group_size: usize, chats_per_user: usize) -> Self {
        let group_size = group_size.max(1);
        Layout { connections, group_size, groups: connections.div_ceil(group_size), layers: chats_per_user }
    }

    pub fn chat_count(&self) -> usize {
        self.groups * self.layers
    }

    pub fn chats_per_user(&self) -> usize {
        self.layers
    }

    /// The users of chat index `chat`, in member order.
    pub fn members(&self, chat: usize) -> Vec<usize> {
        let (layer, group) = (chat / self.groups, chat % self.groups);
        (0..self.group_size)
            .map(|i| {
                let shift = (i * layer) % self.groups;
                let home = (group + self.groups - shift) % self.groups;
                home * self.group_size + i
            })
            .filter(|&user| user < self.connections)
            .collect()
    }

    /// The chat index of `user`'s chat in `layer`.
    pub fn chat_of(&self, user: usize, layer: usize) -> usize {
        let (home, i) = (user / self.group_size, user % self.group_size);
        layer * self.groups + (home + i * layer) % self.groups
    }

    /// `user`'s chat indices, layer by layer.
    pub fn chats_of(&self, user: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.layers).map(move |layer| self.chat_of(user, layer))
    }
}

#[cfg(test)]
mod tests {
    use super::Layout;

    #[test]
    fn one_layer_is_groups_of_consecutive_users() {
        let layout = Layout::new(30, 10, 1);
        assert_eq!(layout.chat_count(), 3);
        assert_eq!(layout.members(1), (10..20).collect::<Vec<_>>());
        assert_eq!(layout.chats_of(25).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn every_user_is_in_one_chat_of_each_layer_and_every_chat_is_full() {
        for (connections, group_size, layers) in [(200, 10, 5), (60, 10, 20), (20, 10, 3), (12, 2, 4)] {
            let layout = Layout::new(connections, group_size, layers);
            let mut chats_of_user = vec![Vec::new(); connections];
            for chat in 0..layout.chat_count() {
                let members = layout.members(chat);
                assert_eq!(members.len(), group_size, "chat {chat} of {connections}/{group_size}/{layers}");
                let mut distinct = members.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), group_size, "chat {chat} repeats a member");
                for user in members {
                    chats_of_user[user].push(chat);
                }
            }
            for (user, chats) in chats_of_user.iter().enumerate() {
                assert_eq!(*chats, layout.chats_of(user).collect::<Vec<_>>(), "user {user}");
            }
        }
    }

    #[test]
    fn later_layers_mix_users_of_different_first_layer_groups() {
        let layout = Layout::new(100, 10, 2);
        let homes: Vec<usize> = layout.members(10).iter().map(|user| user / 10).collect();
        assert_eq!(homes, (0..10).map(|i| (10 - i) % 10).collect::<Vec<_>>());
    }
}
