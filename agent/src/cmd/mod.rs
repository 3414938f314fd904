//! The commands, one file each (like mini-redis's `cmd/`): the request type a client sends, how
//! the agent validates it, and the result type it answers. The server decodes with these types,
//! the executor answers with them, and the CLI encodes and decodes with the very same ones, so a
//! new field is added in one place.
//!
//! Requests are `{"op": <Op::NAME>, …fields}`; [`OPS`] is the one list of them.

mod attach;
mod check;
mod create;
mod delete;
mod get;
mod list;
mod ping;
mod status;
mod update;
mod watch;

pub use attach::{Attach, Detach};
pub use check::{Check, CheckReport, Drift};
pub use create::{sorted, Create, DEFAULT_NS_IFNAME};
pub use delete::{Delete, Deleted};
pub use get::Get;
pub use list::{List, NamespaceList};
pub use ping::{Ping, Pong};
pub use status::{GetStatus, PoolStatus, Status, WarmStatus};
pub use update::{ConfPatch, Patch, Update};
pub use watch::{Watch, Watching};

use crate::model::NamespaceSpec;
use crate::protocol::{ApiError, ErrorCode, Limits};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// A request as it travels: its wire fields, its name, what it answers.
pub trait Op: Serialize + DeserializeOwned {
    /// The value of the request's `op` field.
    const NAME: &'static str;
    /// The `result` of a successful answer.
    type Output: Serialize + DeserializeOwned;
    /// Checks every field; what comes out can be trusted by everything behind the queue.
    fn validate(self, limits: Limits) -> Result<Request, ApiError>;
}

/// A decoded, validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping,
    Create(NamespaceSpec),
    Delete {
        name: String,
    },
    Get {
        name: String,
    },
    List {
        selector: crate::model::Labels,
    },
    Status,
    Update {
        name: String,
        patch: ConfPatch,
    },
    /// Answered by the connection, never queued (server::handler).
    Watch {
        selector: crate::model::Labels,
    },
    Check {
        repair: bool,
        name: Option<String>,
    },
    /// A create in a namespace that exists already (its file at `netns_path`).
    Attach {
        spec: NamespaceSpec,
        netns_path: std::path::PathBuf,
    },
    Detach {
        name: String,
    },
}

impl Request {
    /// The namespace a request names, if it names one.
    pub fn names(&self) -> Option<&str> {
        match self {
            Request::Get { name } => Some(name),
            _ => self.writes(),
        }
    }

    /// The namespace a request changes, if it changes one.
    pub fn writes(&self) -> Option<&str> {
        match self {
            Request::Create(spec) | Request::Attach { spec, .. } => Some(&spec.name),
            Request::Delete { name } | Request::Detach { name } => Some(name),
            Request::Update { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// What the executor answers: one variant per result type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    Pong(Pong),
    Watching(Watching),
    Check(CheckReport),
    Namespace(crate::model::Namespace),
    Deleted(Deleted),
    Status(Status),
    /// A result already encoded as JSON: how the executor answers a large `list`, so that the
    /// answer exists once in memory (as its line), not as values and then as text.
    Encoded(Encoded),
}

/// The JSON text of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(pub Vec<u8>);

impl Serialize for Encoded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Only reached through `protocol::encode` of a borrowed reply (tests, refusals); the
        // server's path splices the text in without parsing it.
        let v: serde_json::Value =
            serde_json::from_slice(&self.0).map_err(serde::ser::Error::custom)?;
        v.serialize(s)
    }
}

/// Every op: its name and how its fields are decoded and validated.
type Decoder = fn(Map<String, Value>, Limits) -> Result<Request, ApiError>;
pub const OPS: [(&str, Decoder); 11] = [
    (Ping::NAME, decode::<Ping>),
    (Create::NAME, decode::<Create>),
    (Delete::NAME, decode::<Delete>),
    (Get::NAME, decode::<Get>),
    (List::NAME, decode::<List>),
    (GetStatus::NAME, decode::<GetStatus>),
    (Update::NAME, decode::<Update>),
    (Watch::NAME, decode::<Watch>),
    (Check::NAME, decode::<Check>),
    (Attach::NAME, attach::decode),
    (Detach::NAME, decode::<Detach>),
];

fn decode<O: Op>(fields: Map<String, Value>, limits: Limits) -> Result<Request, ApiError> {
    let op: O = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    op.validate(limits)
}
