//! The wire protocol: one JSON object per line each way (docs/protocol.md).
//! Decoding validates everything, so what goes into the queue can be trusted.

use crate::cmd::{Request, Response, OPS};
use crate::model::ValidationError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest request line accepted; a longer one closes the connection.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    PortInUse,
    InvalidAddress,
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
            ErrorCode::PortInUse => "port_in_use",
            ErrorCode::InvalidAddress => "invalid_address",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
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

/// What validation needs to know about the agent's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Smallest allowed prefix length of an explicit subnet (the pool's per-namespace size).
    pub min_prefix: u8,
    /// The same for IPv6 (`--prefix-len6`); `None`: the agent has no IPv6 pool and is IPv4
    /// only.
    pub min_prefix6: Option<u8>,
}

/// An answer: a command's result, or why not.
pub type Reply = Result<Response, ApiError>;

/// A decoded line: the id to echo (null when none could be read), the op's name for metrics and
/// logs (`invalid` when the op could not be read), and the validated request or why not.
pub struct Decoded {
    pub id: Value,
    pub op_name: &'static str,
    pub request: Result<Request, ApiError>,
}

pub fn decode(line: &[u8], limits: Limits) -> Decoded {
    let mut d = Decoded {
        id: Value::Null,
        op_name: "invalid",
        request: Err(ApiError::new(ErrorCode::BadRequest, "")),
    };
    let bad = |m: String| Err(ApiError::new(ErrorCode::BadRequest, m));
    let mut fields = match serde_json::from_slice(line) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            d.request = bad("request must be a JSON object".into());
            return d;
        }
        Err(e) => {
            d.request = bad(format!("not JSON: {e}"));
            return d;
        }
    };
    d.id = match fields.remove("id") {
        None => Value::Null,
        Some(v @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
        Some(_) => {
            d.request = bad("id must be a JSON scalar".into());
            return d;
        }
    };
    let Some(Value::String(op)) = fields.remove("op") else {
        d.request = bad("missing or non-string \"op\"".into());
        return d;
    };
    let Some((name, decoder)) = OPS.iter().find(|(name, _)| *name == op) else {
        let known: Vec<&str> = OPS.iter().map(|(name, _)| *name).collect();
        d.request = bad(format!("unknown op {op:?}, expected one of {known:?}"));
        return d;
    };
    d.op_name = name;
    d.request = decoder(fields, limits);
    d
}

/// One response line (without the newline), taking the reply: an already encoded result is
/// spliced in place (its buffer becomes the line), never parsed or copied whole.
pub fn encode_owned(id: &Value, result: Reply) -> Vec<u8> {
    match result {
        Ok(Response::Encoded(crate::cmd::Encoded(mut text))) => {
            let id = serde_json::to_vec(id).unwrap_or_else(|_| b"null".to_vec());
            let mut prefix = br#"{"id":"#.to_vec();
            prefix.extend_from_slice(&id);
            prefix.extend_from_slice(br#","ok":true,"result":"#);
            text.splice(0..0, prefix);
            text.push(b'}');
            text
        }
        other => encode(id, &other),
    }
}

/// One response line (without the newline).
pub fn encode(id: &Value, result: &Reply) -> Vec<u8> {
    #[derive(Serialize)]
    struct Ok<'a> {
        id: &'a Value,
        ok: bool,
        result: &'a Response,
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

    const L: Limits = Limits {
        min_prefix: 30,
        min_prefix6: Some(64),
    };

    fn code(line: &str) -> ErrorCode {
        decode(line.as_bytes(), L).request.unwrap_err().code
    }

    #[test]
    fn decodes_create_with_defaults() {
        let d = decode(br#"{"id":2,"op":"create","name":"netns-A"}"#, L);
        assert_eq!(d.id, json!(2));
        assert_eq!(d.op_name, "create");
        let Request::Create(spec) = d.request.unwrap() else {
            panic!()
        };
        assert!(spec.conf.nat);
        assert_eq!(spec.ns_ifname, "eth0");
        assert_eq!(spec.subnet, None);
    }

    #[test]
    fn ids_are_echoed_even_on_error() {
        let d = decode(br#"{"id":"x-1","op":"nope"}"#, L);
        assert_eq!(d.id, json!("x-1"));
        assert_eq!(d.op_name, "invalid");
        assert_eq!(d.request.unwrap_err().code, ErrorCode::BadRequest);
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
        let pong = crate::cmd::Pong {
            version: "x".into(),
        };
        let ok = encode(&json!(1), &Ok(Response::Pong(pong)));
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
