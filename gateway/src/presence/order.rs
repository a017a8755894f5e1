//! Which presence announcements are news. In a cluster a user's
//! transitions are decided one at a time in Redis, but each is announced
//! by the gateway that made it, after that gateway's own work (an
//! `offline` first records the last-seen time in the database). A user
//! moving from one gateway to another (a drain, a rolling update) could
//! have the new gateway's `online` published before the old one's
//! `offline`, and co-members would go on seeing them offline while they
//! are connected. So each announcement carries the number Redis gave its
//! transition, and a gateway drops one not above the last it applied for
//! that user.
//!
//! How long numbers are remembered: [`crate::latest`].

use crate::latest::Latest;

/// The last presence number applied per user.
pub type LatestPresence = Latest<String>;
