//! Chats and their members: creation, deletion and membership changes (the
//! REST side of PROTOCOL.md section 7), and the membership look-ups the
//! gateway subscribes by.

use std::collections::{BTreeSet, HashMap};

use sqlx::any::AnyArguments;

use super::batch_rows::{BatchRows, Column, Value};
use super::chat_quota::require_room;
use super::placeholders::Placeholders;
use super::{members_of, membership, Backend, Membership, Store, StoreError, StoreRefusal};
use crate::auth::valid_user_id;
use crate::error::Refusal;
use crate::model::{storable, ChatId, ChatKind, MarkKind, Millis, UserId};

/// The most members one chat may have; bounds the work of one fan-out.
pub const MAX_MEMBERS: usize = 10_000;
/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest `photoUrl`, in bytes: a URL, not the picture. Every member's
/// chat list and every `chats` frame about the chat carries it.
pub const MAX_PHOTO_URL_BYTES: usize = 2048;

/// Members per `INSERT` at a chat's creation: three parameters each on
/// SQLite, well under its limit on a statement's parameters (PostgreSQL
/// takes each part as one parameter, and would take all at once).
const MEMBERS_PER_INSERT: usize = 1_000;
const MEMBER_COLUMNS: &[Column] = &[Column::Int, Column::Text, Column::Int];

#[derive(Debug, Clone)]
pub struct NewChat {
    pub kind: ChatKind,
    pub name: Option<String>,
    pub photo_url: Option<String>,
    /// The members named in the request; the creator is added if missing.
    pub members: Vec<UserId>,
    /// The request's `Idempotency-Key`: a retry of the same creator with
    /// the same key gets the chat the first request created, not a second.
    pub idempotency_key: Option<String>,
}

impl NewChat {
    /// A group named `name` of `members` (the creator is added), with no
    /// photo and no idempotency key.
    pub fn group<M: Into<UserId>>(name: impl Into<String>, members: impl IntoIterator<Item = M>) -> NewChat {
        NewChat {
            kind: ChatKind::Group,
            name: Some(name.into()),
            photo_url: None,
            members: members.into_iter().map(Into::into).collect(),
            idempotency_key: None,
        }
    }

    /// A dialog with `other`, with no idempotency key.
    pub fn dialog(other: impl Into<UserId>) -> NewChat {
        NewChat {
            kind: ChatKind::Dialog,
            name: None,
            photo_url: None,
            members: vec![other.into()],
            idempotency_key: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatCreated {
    pub chat_id: ChatId,
    pub members: Vec<UserId>,
    /// True when an earlier request with the same idempotency key created
    /// the chat, and this one only found it.
    pub earlier: bool,
}

/// A chat's membership version when it is created (the column's default,
/// migration 0006); each change after counts one more.
pub const CREATED_MEMBERSHIP_VERSION: i64 = 1;

/// What a membership change (or a deletion) did: the members it names, and
/// the chat's membership version after it, which orders the `chats` frames
/// of changes made through different gateways.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipChange {
    pub members: Vec<UserId>,
    pub version: i64,
}

/// A creation's `Idempotency-Key`, with a digest of what it asked for.
struct Keyed<'a> {
    key: &'a str,
    digest: String,
}

/// SHA-256, in hex, of a creation request as validated: its kind, name,
/// photo and members (the creator among them, sorted), so that a retry
/// that names the members in another order or leaves the creator out is
/// the same request.
fn request_digest(kind: ChatKind, name: Option<&str>, photo_url: Option<&str>, members: &BTreeSet<UserId>) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::json!([kind.as_str(), name, photo_url, members]).to_string();
    Sha256::digest(canonical.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A chat's own row, as `create_chat` validated it.
struct NewChatRow {
    kind: ChatKind,
    name: Option<String>,
    photo_url: Option<String>,
    dialog_key: Option<String>,
}

impl Store {
    /// Creates a chat. A dialog between two users exists at most once: a
    /// second request answers `conflict` naming the existing chat's id in the
    /// `Err` side's message and in `existing`. A request carrying the
    /// idempotency key of an earlier one by the same creator answers with
    /// the chat that one created (`not_found` if it has been deleted since),
    /// or `conflict` if it asks for something else (another kind, name,
    /// photo or set of members).
    pub async fn create_chat(
        &self,
        creator: &str,
        request: NewChat,
        now: Millis,
    ) -> Result<ChatCreated, (StoreRefusal, Option<ChatId>)> {
        let mut members: BTreeSet<UserId> = BTreeSet::new();
        for m in request.members {
            if !valid_user_id(&m) {
                return Err((Refusal::bad_request(format!("{m:?} is not a valid user id")).into(), None));
            }
            members.insert(m);
        }
        members.insert(creator.to_owned());
        let (name, dialog_key) = match request.kind {
            ChatKind::Dialog => {
                if members.len() != 2 {
                    return Err((Refusal::bad_request("a dialog has exactly one member besides you").into(), None));
                }
                let key = members.iter().cloned().collect::<Vec<_>>().join("\n");
                (None, Some(key))
            }
            ChatKind::Group => {
                let name = request.name.unwrap_or_default();
                let chars = name.chars().count();
                if !(1..=MAX_NAME_CHARS).contains(&chars) {
                    return Err((
                        Refusal::bad_request(format!("a group needs a name of 1..={MAX_NAME_CHARS} characters")).into(),
                        None,
                    ));
                }
                storable("name", &name).map_err(|refusal| (refusal.into(), None))?;
                (Some(name), None)
            }
        };
        if let Some(photo_url) = &request.photo_url {
            if photo_url.len() > MAX_PHOTO_URL_BYTES {
                let refusal = Refusal::bad_request(format!("photoUrl is longer than {MAX_PHOTO_URL_BYTES} bytes"));
                return Err((refusal.into(), None));
            }
            storable("photoUrl", photo_url).map_err(|refusal| (refusal.into(), None))?;
        }
        if members.len() > MAX_MEMBERS {
            return Err((Refusal::bad_request(format!("a chat has at most {MAX_MEMBERS} members")).into(), None));
        }
        let keyed = request.idempotency_key.as_deref().map(|key| Keyed {
            key,
            digest: request_digest(request.kind, name.as_deref(), request.photo_url.as_deref(), &members),
        });
        if let Some(keyed) = &keyed {
            if let Some(earlier) = self.created_under(creator, keyed).await.map_err(|e| (e, None))? {
                return Ok(earlier);
            }
        }
        if let Some(key) = &dialog_key {
            if let Some(existing) = self.dialog_with_key(key).await.map_err(|e| (e.into(), None))? {
                return Err((Refusal::conflict("that dialog exists already").into(), Some(existing)));
            }
        }
        let chat =
            NewChatRow { kind: request.kind, name, photo_url: request.photo_url, dialog_key: dialog_key.clone() };
        let created = self.insert_chat(creator, chat, &members, keyed.as_ref(), now).await;
        match (created, &keyed) {
            (Ok(Some(chat_id)), _) => {
                Ok(ChatCreated { chat_id, members: members.into_iter().collect(), earlier: false })
            }
            // A request with the same idempotency key committed first.
            (Ok(None), Some(keyed)) => match self.created_under(creator, keyed).await {
                Ok(Some(earlier)) => Ok(earlier),
                Ok(None) => Err((
                    StoreError::Corrupt("an idempotency key was taken, with no chat under it".into()).into(),
                    None,
                )),
                Err(e) => Err((e, None)),
            },
            (Ok(None), None) => Err((StoreError::Corrupt("a chat without a key was not inserted".into()).into(), None)),
            // Two requests raced to create the same dialog: the unique key
            // let one through; answer the other like any second request.
            (Err(e), _) => match &dialog_key {
                Some(key) => match self.dialog_with_key(key).await {
                    Ok(Some(existing)) => Err((Refusal::conflict("that dialog exists already").into(), Some(existing))),
                    _ => Err((e, None)),
                },
                None => Err((e, None)),
            },
        }
    }

    /// The chat an earlier request of `creator` under the same key created,
    /// with its members now; `None` if no request did. A key first used for
    /// a different request is refused rather than answered with that
    /// request's chat.
    async fn created_under(&self, creator: &str, keyed: &Keyed<'_>) -> Result<Option<ChatCreated>, StoreRefusal> {
        // The chat's own row, joined, tells a deleted chat from a live one.
        let row: Option<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT k.chat_id, c.id, k.request_digest FROM chat_creations k LEFT JOIN chats c ON c.id = k.chat_id \
             WHERE k.creator = $1 AND k.idempotency_key = $2",
        )
        .bind(creator)
        .bind(keyed.key)
        .fetch_optional(&self.writer)
        .await?;
        let Some((chat_id, live, digest)) = row else { return Ok(None) };
        // Keys stored by a binary older than the digest are not compared.
        if digest.is_some_and(|digest| digest != keyed.digest) {
            return Err(Refusal::conflict(format!(
                "this Idempotency-Key was first used for a different request (chat {chat_id}); \
                 use a new key for a new chat"
            ))
            .into());
        }
        if live.is_none() {
            return Err(Refusal::not_found(format!(
                "chat {chat_id}, created under this idempotency key, has been deleted"
            ))
            .into());
        }
        let members = members_of(&self.writer, chat_id).await?;
        Ok(Some(ChatCreated { chat_id, members, earlier: true }))
    }

    async fn dialog_with_key(&self, key: &str) -> Result<Option<ChatId>, StoreError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM chats WHERE dialog_key = $1").bind(key).fetch_optional(&self.writer).await?;
        Ok(row.map(|r| r.0))
    }

    /// Inserts the chat, its members and the idempotency key it was
    /// created under in one transaction. `None`, with nothing inserted, when
    /// another request took the key first.
    async fn insert_chat(
        &self,
        creator: &str,
        chat: NewChatRow,
        members: &BTreeSet<UserId>,
        keyed: Option<&Keyed<'_>>,
        now: Millis,
    ) -> Result<Option<ChatId>, StoreRefusal> {
        let NewChatRow { kind, name, photo_url, dialog_key } = chat;
        let mut tx = self.writer.begin().await?;
        let joining: Vec<&str> = members.iter().map(String::as_str).collect();
        require_room(&mut tx, &joining).await?;
        // Counted at the chat's first membership version (migration 0006).
        let (chat_id,): (i64,) = sqlx::query_as(
            "INSERT INTO chats (kind, name, photo_url, creator, dialog_key, created_at, last_activity_at, \
               membership_version, member_count, member_count_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, 1, $7, 1) RETURNING id",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(photo_url)
        .bind(creator)
        .bind(dialog_key)
        .bind(now)
        .bind(joining.len() as i64)
        .fetch_one(&mut *tx)
        .await?;
        // A statement per member was a round trip each: 10,000 of them made
        // most of a large group's creation on PostgreSQL.
        for part in joining.chunks(MEMBERS_PER_INSERT) {
            let mut rows = BatchRows::new(&tx, MEMBER_COLUMNS);
            for member in part {
                rows.push([Value::Int(chat_id), Value::Text(member), Value::Int(now)]);
            }
            rows.insert(&mut tx, "members (chat_id, user_id, joined_at)").await?;
        }
        if let Some(keyed) = keyed {
            // On PostgreSQL this waits for a concurrent request holding the
            // same key to finish, then inserts nothing if it committed.
            let recorded = sqlx::query(
                "INSERT INTO chat_creations (creator, idempotency_key, chat_id, created_at, request_digest) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(creator)
            .bind(keyed.key)
            .bind(chat_id)
            .bind(now)
            .bind(&keyed.digest)
            .execute(&mut *tx)
            .await?;
            if recorded.rows_affected() == 0 {
                return Ok(None);
            }
        }
        tx.commit().await?;
        Ok(Some(chat_id))
    }

    /// Deletes a chat, which is gone for everyone when this returns; its
    /// history is purged later ([`Store::purge_deleted_chats`]). Only its
    /// creator may. Returns the members it had.
    pub async fn delete_chat(&self, chat: ChatId, by: &str, now: Millis) -> Result<MembershipChange, StoreRefusal> {
        let mut tx = self.writer.begin().await?;
        let version = lock_for_change(&mut tx, chat).await?;
        require_creator(&mut tx, chat, by).await?;
        let members = members_of(&mut *tx, chat).await?;
        // Every read of a chat starts from its row or its members, so the
        // chat is gone for everyone once these two are. Its history is
        // purged later, in steps (store/purge.rs): deleting a million
        // messages with their events and marks in one transaction took
        // 1.6 s on PostgreSQL and 3.2 s on SQLite, all under the chat's
        // lock (on SQLite, every write waited), and four million outlasted
        // the store's deadline: such a chat could not be deleted at all.
        sqlx::query("DELETE FROM members WHERE chat_id = $1").bind(chat).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM chats WHERE id = $1").bind(chat).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO deleted_chats (chat_id, deleted_at) VALUES ($1, $2)")
            .bind(chat)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MembershipChange { members, version })
    }

    /// Refuses as [`delete_chat`](Self::delete_chat) would, changing
    /// nothing: a caller that reads the chat before deleting it refuses a
    /// stranger before that read. A chat's creator never changes, so the
    /// answer holds until the deletion checks again.
    pub async fn may_delete(&self, chat: ChatId, by: &str) -> Result<(), StoreRefusal> {
        require_creator(&mut *self.reader.acquire().await?, chat, by).await
    }

    /// Adds `user` to group `chat`; any member may. Returns the members after.
    pub async fn add_member(
        &self,
        chat: ChatId,
        by: &str,
        user: &str,
        now: Millis,
    ) -> Result<MembershipChange, StoreRefusal> {
        if !valid_user_id(user) {
            return Err(Refusal::bad_request(format!("{user:?} is not a valid user id")).into());
        }
        let mut tx = self.writer.begin().await?;
        let version = lock_for_change(&mut tx, chat).await?;
        membership(&mut *tx, chat, by).await?.require()?;
        require_group(&mut tx, chat).await?;
        let mut members = members_of(&mut *tx, chat).await?;
        let Err(at) = members.binary_search_by(|m| m.as_str().cmp(user)) else {
            return Err(Refusal::conflict(format!("{user} is already a member")).into());
        };
        if members.len() >= MAX_MEMBERS {
            return Err(Refusal::bad_request(format!("a chat has at most {MAX_MEMBERS} members")).into());
        }
        require_room(&mut tx, &[user]).await?;
        // A newcomer's marks start at 0 like everyone's (PROTOCOL.md 5); a
        // member added back resumes theirs, which only move forward: their
        // `dlvrd` and `read` events are in the chat's log for good, and
        // marks reset to 0 would have the next ones go back on them. A
        // member's marks are the ends of their marked ranges, which a
        // removal keeps, so they are read from there, a range committed
        // alongside the removal included.
        sqlx::query(
            "INSERT INTO members (chat_id, user_id, joined_at, delivered_mark, read_mark) VALUES ($1, $2, $3, \
             COALESCE((SELECT MAX(last_message_id) FROM mark_ranges \
                       WHERE chat_id = $1 AND user_id = $2 AND kind = $4), 0), \
             COALESCE((SELECT MAX(last_message_id) FROM mark_ranges \
                       WHERE chat_id = $1 AND user_id = $2 AND kind = $5), 0))",
        )
        .bind(chat)
        .bind(user)
        .bind(now)
        .bind(MarkKind::Delivered.as_str())
        .bind(MarkKind::Read.as_str())
        .execute(&mut *tx)
        .await?;
        // The members after, without reading them again: the chat's row
        // lock keeps every other change out until the commit.
        members.insert(at, user.to_owned());
        set_member_count(&mut tx, chat, members.len(), version).await?;
        tx.commit().await?;
        Ok(MembershipChange { members, version })
    }

    /// Removes `user` from group `chat`: members may leave; the creator may
    /// remove anyone. Returns the members before the removal.
    pub async fn remove_member(&self, chat: ChatId, by: &str, user: &str) -> Result<MembershipChange, StoreRefusal> {
        let mut tx = self.writer.begin().await?;
        let version = lock_for_change(&mut tx, chat).await?;
        require_may_remove(&mut tx, chat, by, user).await?;
        let members = members_of(&mut *tx, chat).await?;
        if !members.iter().any(|m| m == user) {
            return Err(Refusal::not_found(format!("{user} is not a member")).into());
        }
        // Their marked ranges stay: receipts read only members' ranges, and
        // a member added back resumes their marks from them.
        sqlx::query("DELETE FROM members WHERE chat_id = $1 AND user_id = $2")
            .bind(chat)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        set_member_count(&mut tx, chat, members.len() - 1, version).await?;
        tx.commit().await?;
        Ok(MembershipChange { members, version })
    }

    /// Refuses as [`remove_member`](Self::remove_member) would before it
    /// reads the members, changing nothing: a caller that reads the removed
    /// member's view first refuses a stranger before that read.
    pub async fn may_remove(&self, chat: ChatId, by: &str, user: &str) -> Result<(), StoreRefusal> {
        require_may_remove(&mut *self.reader.acquire().await?, chat, by, user).await
    }

    pub async fn members(&self, chat: ChatId) -> Result<Vec<UserId>, StoreError> {
        members_of(&self.reader, chat).await
    }

    /// The chats of each of `users`, with each chat's last event id (a user
    /// in none is absent): what a gateway subscribes newly connected users
    /// to, read for many at once (`gateway::chat_lists`).
    ///
    /// Each chat is looked up by its key from a user's memberships, not
    /// joined: on tables PostgreSQL has no statistics for yet (a new
    /// database, or a burst of new chats before autovacuum analyzes them)
    /// its generic plan for the join hashed a scan of every chat, ten times
    /// the cost, on a call every connection makes; a reconnect storm made
    /// it PostgreSQL's largest cost (docs/benchmarks-journal.md, tenth
    /// session). Each user's memberships are probed by key too; on
    /// PostgreSQL through a lateral subquery that `OFFSET 0` keeps the
    /// planner from flattening into a join it may hash (SQLite, which has
    /// no lateral joins, probes its join by key). A membership whose chat
    /// is gone (none should be) is skipped.
    pub async fn chats_of_users(&self, users: &[&str]) -> Result<HashMap<String, Vec<(ChatId, i64)>>, StoreError> {
        let (users_table, args) = self.users_table(users)?;
        let last_event_id = "(SELECT c.last_event_id FROM chats c WHERE c.id = m.chat_id)";
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT v.column1, mc.chat_id, mc.last_event_id FROM {users_table} CROSS JOIN LATERAL \
                   (SELECT m.chat_id, {last_event_id} AS last_event_id \
                    FROM members m WHERE m.user_id = v.column1 OFFSET 0) AS mc"
            ),
            Backend::Sqlite => format!(
                "SELECT v.column1, m.chat_id, {last_event_id} FROM {users_table} JOIN members m ON m.user_id = v.column1"
            ),
        };
        let rows: Vec<(String, ChatId, Option<i64>)> = sqlx::query_as_with(&sql, args).fetch_all(&self.reader).await?;
        let mut chats: HashMap<String, Vec<(ChatId, i64)>> = HashMap::new();
        for (user, chat, last) in rows {
            if let Some(last) = last {
                chats.entry(user).or_default().push((chat, last));
            }
        }
        Ok(chats)
    }
}

/// Takes `chat`'s row lock before anything of the chat is read: every
/// command a worker applies holds it until its commit, so under
/// PostgreSQL's read committed the statements after it see what those
/// commands wrote. Without it, a deletion or a membership change made
/// alongside a worker's batch missed the batch's rows: a member added as
/// the chat was deleted outlived it (and a `new` of theirs stalled the
/// shard), a mark range outlived its membership. `not_found` if the chat is
/// gone. Counts the change: the chat's membership version after it.
async fn lock_for_change(tx: &mut sqlx::Transaction<'_, sqlx::Any>, chat: ChatId) -> Result<i64, StoreRefusal> {
    let version: Option<(i64,)> = sqlx::query_as(
        "UPDATE chats SET membership_version = membership_version + 1 WHERE id = $1 RETURNING membership_version",
    )
    .bind(chat)
    .fetch_optional(&mut **tx)
    .await?;
    version.map(|(version,)| version).ok_or_else(|| Refusal::no_chat().into())
}

/// Records that `chat` has `members` members at membership `version`
/// (migration 0009), in the transaction that holds its row since
/// [`lock_for_change`], so that no other change comes between the count
/// and the commit.
async fn set_member_count(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    chat: ChatId,
    members: usize,
    version: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE chats SET member_count = $2, member_count_version = $3 WHERE id = $1")
        .bind(chat)
        .bind(members as i64)
        .bind(version)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn require_creator(db: &mut sqlx::AnyConnection, chat: ChatId, by: &str) -> Result<(), StoreRefusal> {
    membership(&mut *db, chat, by).await?.require()?;
    if creator_of(db, chat).await? != by {
        return Err(Refusal::forbidden("only the chat's creator may delete it").into());
    }
    Ok(())
}

/// `by` may remove `user` from `chat`: a member of the group, removing
/// themself or, as its creator, anyone. Leaving a chat one has already
/// left is `not_found`, as removing anyone else who is not a member: a
/// retried leave (its first answer lost) is told it was done, not that it
/// was refused.
async fn require_may_remove(
    db: &mut sqlx::AnyConnection,
    chat: ChatId,
    by: &str,
    user: &str,
) -> Result<(), StoreRefusal> {
    match membership(&mut *db, chat, by).await? {
        Membership::NotMember if by == user => return Err(Refusal::not_found(format!("{user} is not a member")).into()),
        membership => membership.require()?,
    }
    require_group(db, chat).await?;
    if by != user && by != creator_of(db, chat).await? {
        return Err(Refusal::forbidden("only the creator may remove other members").into());
    }
    Ok(())
}

/// The chat's creator. Asked after the caller's membership, outside a
/// transaction (`may_delete`, `may_remove`), the chat can be gone by then:
/// that is `not_found`, not an error of the store.
async fn creator_of(db: &mut sqlx::AnyConnection, chat: ChatId) -> Result<String, StoreRefusal> {
    let creator: Option<(String,)> =
        sqlx::query_as("SELECT creator FROM chats WHERE id = $1").bind(chat).fetch_optional(&mut *db).await?;
    Ok(creator.ok_or_else(Refusal::no_chat)?.0)
}

async fn require_group(db: &mut sqlx::AnyConnection, chat: ChatId) -> Result<(), StoreRefusal> {
    let kind: Option<(String,)> =
        sqlx::query_as("SELECT kind FROM chats WHERE id = $1").bind(chat).fetch_optional(&mut *db).await?;
    if kind.ok_or_else(Refusal::no_chat)?.0 != ChatKind::Group.as_str() {
        return Err(Refusal::bad_request("members can only be changed in a group").into());
    }
    Ok(())
}

impl Store {
    /// Each of `chats`' last event id, in one statement; a chat that does
    /// not exist is left out. Why one statement: a gateway checks every
    /// chat it newly subscribes to for events it may have missed, and in a
    /// reconnect storm of users in 20 chats one statement per chat made
    /// 77,632 round trips in 25 s, each holding a pooled connection that
    /// the connections setting up were waiting for (docs/benchmarks-journal.md,
    /// twenty-eighth session).
    pub async fn last_event_ids(&self, chats: &[ChatId]) -> Result<Vec<(ChatId, i64)>, StoreError> {
        if chats.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = BatchRows::for_backend(self.backend, &[Column::Int]);
        for &chat in chats {
            keys.push([Value::Int(chat)]);
        }
        let table = keys.table(&mut Placeholders::for_backend(self.backend), "v");
        let sql = format!("SELECT c.id, c.last_event_id FROM {table} JOIN chats c ON c.id = v.column1");
        let mut args = AnyArguments::default();
        keys.add_to(&mut args)?;
        Ok(sqlx::query_as_with(&sql, args).fetch_all(&self.reader).await?)
    }
}
