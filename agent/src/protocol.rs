//! The wire protocol: one JSON object per line each way (docs/protocol.md).
//! Decoding validates everything, so what goes into the queue can be trusted.

use crate::model::{self, NamespaceSpec, Subnet, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest request line accepted; a longer one closes the connection.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidName,
    InvalidSubnet,
    Exists,
    NotFound,
    SubnetInUse,
    PoolExhausted,
    Busy,
    Kernel,
    Internal,
    Forbidden,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidSubnet => "invalid_subnet",
            ErrorCode::Exists => "exists",
            ErrorCode::NotFound => "not_found",
            ErrorCode::SubnetInUse => "subnet_in_use",
            ErrorCode::PoolExhausted => "pool_exhausted",
            ErrorCode::Busy => "busy",
            ErrorCode::Kernel => "kernel",
            ErrorCode::Internal => "internal",
            ErrorCode::Forbidden => "forbidden",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let code = match e {
            ValidationError::Subnet(..) => ErrorCode::InvalidSubnet,
            _ => ErrorCode::InvalidName,
        };
        ApiError::new(code, e.to_string())
    }
}

/// A decoded, validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Ping,
    Create(NamespaceSpec),
    Delete { name: String },
    Get { name: String },
    List,
    Status,
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Ping => "ping",
            Op::Create(_) => "create",
            Op::Delete { .. } => "delete",
            Op::Get { .. } => "get",
            Op::List => "list",
            Op::Status => "status",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameArg {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    name: String,
    subnet: Option<String>,
    nat: Option<bool>,
    ns_ifname: Option<String>,
    host_ifname: Option<String>,
    mtu: Option<u32>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Raw {
    Ping(NoArgs),
    Create(CreateArgs),
    Delete(NameArg),
    Get(NameArg),
    List(NoArgs),
    Status(NoArgs),
}

/// What validation needs to know about the agent's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Smallest allowed prefix length of an explicit subnet (the pool's per-namespace size).
    pub min_prefix: u8,
}

/// A decoded line: the id to echo (null when none could be read), the op's name for metrics and
/// logs (`invalid` when the op could not be read), and the validated request or why not.
pub struct Decoded {
    pub id: Value,
    pub op_name: &'static str,
    pub op: Result<Op, ApiError>,
}

const OPS: [&str; 6] = ["ping", "create", "delete", "get", "list", "status"];

pub fn decode(line: &[u8], limits: Limits) -> Decoded {
    let (id, op) = decode_inner(line, limits);
    let op_name = match &op {
        Ok(op) => op.name(),
        Err(_) => serde_json::from_slice::<Value>(line)
            .ok()
            .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_string))
            .and_then(|o| OPS.iter().find(|k| **k == o).copied())
            .unwrap_or("invalid"),
    };
    Decoded { id, op_name, op }
}

fn decode_inner(line: &[u8], limits: Limits) -> (Value, Result<Op, ApiError>) {
    let bad = |m: String| Err(ApiError::new(ErrorCode::BadRequest, m));
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return (Value::Null, bad(format!("not JSON: {e}"))),
    };
    let Value::Object(mut map) = value else {
        return (Value::Null, bad("request must be a JSON object".into()));
    };
    let id = match map.remove("id") {
        None => Value::Null,
        Some(v @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
        Some(_) => return (Value::Null, bad("id must be a JSON scalar".into())),
    };
    (id, decode_op(map, limits))
}

fn decode_op(map: Map<String, Value>, limits: Limits) -> Result<Op, ApiError> {
    if !matches!(map.get("op"), Some(Value::String(_))) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "missing or non-string \"op\"",
        ));
    }
    let raw: Raw = serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    Ok(match raw {
        Raw::Ping(_) => Op::Ping,
        Raw::List(_) => Op::List,
        Raw::Status(_) => Op::Status,
        Raw::Delete(NameArg { name }) => {
            model::validate_name(&name)?;
            Op::Delete { name }
        }
        Raw::Get(NameArg { name }) => {
            model::validate_name(&name)?;
            Op::Get { name }
        }
        Raw::Create(CreateArgs {
            name,
            subnet,
            nat,
            ns_ifname,
            host_ifname,
            mtu,
        }) => {
            model::validate_name(&name)?;
            let ns_ifname = ns_ifname.unwrap_or_else(|| "eth0".to_string());
            model::validate_ifname(&ns_ifname)?;
            if ns_ifname == "lo" {
                return Err(ValidationError::IfName(ns_ifname).into());
            }
            if let Some(h) = &host_ifname {
                model::validate_ifname(h)?;
                if model::is_agent_ifname(h) {
                    return Err(ValidationError::ReservedIfName(h.clone()).into());
                }
            }
            let subnet = subnet
                .map(|s| Subnet::parse_for_namespace(&s, limits.min_prefix))
                .transpose()?;
            if let Some(m) = mtu {
                if !(68..=65535).contains(&m) {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        format!("mtu {m} out of range 68..=65535"),
                    ));
                }
            }
            Op::Create(NamespaceSpec {
                name,
                subnet,
                nat: nat.unwrap_or(true),
                ns_ifname,
                host_ifname,
                mtu,
            })
        }
    })
}

/// One response line (without the newline).
pub fn encode(id: &Value, result: &Result<Value, ApiError>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Ok<'a> {
        id: &'a Value,
        ok: bool,
        result: &'a Value,
    }
    #[derive(Serialize)]
    struct Err<'a> {
        id: &'a Value,
        ok: bool,
        error: &'a ApiError,
    }
    let out = match result {
        Result::Ok(v) => serde_json::to_vec(&Ok {
            id,
            ok: true,
            result: v,
        }),
        Result::Err(e) => serde_json::to_vec(&Err {
            id,
            ok: false,
            error: e,
        }),
    };
    // Serialising plain values cannot fail; answer something well-formed regardless.
    out.unwrap_or_else(|_| {
        br#"{"id":null,"ok":false,"error":{"code":"internal","message":"encode"}}"#.to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const L: Limits = Limits { min_prefix: 30 };

    fn code(line: &str) -> ErrorCode {
        decode(line.as_bytes(), L).op.unwrap_err().code
    }

    #[test]
    fn decodes_create_with_defaults() {
        let d = decode(br#"{"id":2,"op":"create","name":"netns-A"}"#, L);
        assert_eq!(d.id, json!(2));
        assert_eq!(d.op_name, "create");
        let Op::Create(spec) = d.op.unwrap() else {
            panic!()
        };
        assert!(spec.nat);
        assert_eq!(spec.ns_ifname, "eth0");
        assert_eq!(spec.subnet, None);
    }

    #[test]
    fn ids_are_echoed_even_on_error() {
        let d = decode(br#"{"id":"x-1","op":"nope"}"#, L);
        assert_eq!(d.id, json!("x-1"));
        assert_eq!(d.op_name, "invalid");
        assert_eq!(d.op.unwrap_err().code, ErrorCode::BadRequest);
        let d = decode(b"not json", L);
        assert_eq!(d.id, Value::Null);
        let d = decode(br#"{"op":"create","name":"a/b"}"#, L);
        assert_eq!(d.op_name, "create");
    }

    #[test]
    fn error_codes() {
        assert_eq!(code("{"), ErrorCode::BadRequest);
        assert_eq!(code("[1]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"op":1}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"id":[1],"op":"ping"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"op":"ping","x":1}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"op":"create","name":"a","bogus":1}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(code(r#"{"op":"create","name":5}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"op":"create","name":"a","nat":"yes"}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"op":"create","name":"a","mtu":10}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(code(r#"{"op":"create"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"op":"create","name":"a/b"}"#),
            ErrorCode::InvalidName
        );
        assert_eq!(
            code(r#"{"op":"create","name":".."}"#),
            ErrorCode::InvalidName
        );
        assert_eq!(code(r#"{"op":"delete","name":""}"#), ErrorCode::InvalidName);
        assert_eq!(
            code(r#"{"op":"create","name":"a","ns_ifname":"x/y"}"#),
            ErrorCode::InvalidName
        );
        assert_eq!(
            code(r#"{"op":"create","name":"a","host_ifname":"nsv01020304"}"#),
            ErrorCode::InvalidName
        );
        assert_eq!(
            code(r#"{"op":"create","name":"a","subnet":"198.18.0.1/30"}"#),
            ErrorCode::InvalidSubnet
        );
        assert_eq!(
            code(r#"{"op":"create","name":"a","subnet":"198.18.0.0/32"}"#),
            ErrorCode::InvalidSubnet
        );
    }

    #[test]
    fn encodes_both_shapes() {
        let ok = encode(&json!(1), &Ok(json!({"version":"x"})));
        assert_eq!(
            String::from_utf8(ok).unwrap(),
            r#"{"id":1,"ok":true,"result":{"version":"x"}}"#
        );
        let err = encode(&Value::Null, &Err(ApiError::new(ErrorCode::NotFound, "no")));
        assert_eq!(
            String::from_utf8(err).unwrap(),
            r#"{"id":null,"ok":false,"error":{"code":"not_found","message":"no"}}"#
        );
    }
}
