//! The request decoder must never panic, whatever arrives on the socket, and whatever it accepts
//! must satisfy the validation rules (so nothing behind the queue sees bad input).
#![no_main]
use libfuzzer_sys::fuzz_target;
use nsagent::cmd::{Pong, Request, Response};
use nsagent::protocol::{decode, encode, Limits};

fuzz_target!(|data: &[u8]| {
    let d = decode(
        data,
        Limits {
            min_prefix: 30,
            min_prefix6: Some(64),
        },
    );
    if let Ok(request) = &d.request {
        match request {
            Request::Create(spec) => {
                assert!(nsagent::model::validate_name(&spec.name).is_ok());
                assert!(nsagent::model::validate_ifname(&spec.ns_ifname).is_ok());
                if let Some(s) = spec.subnet {
                    assert!(s.prefix >= 30 && s.prefix <= 31);
                }
                if let Some(s) = spec.subnet6 {
                    assert!(s.prefix >= 64 && s.prefix <= 127);
                }
                assert!(spec.conf.validate().is_ok());
            }
            Request::Delete { name } | Request::Get { name } => {
                assert!(!name.contains('/') && name != ".." && !name.is_empty());
            }
            Request::Attach { spec, netns_path } => {
                assert!(nsagent::model::validate_name(&spec.name).is_ok());
                assert!(netns_path.is_absolute());
                assert!(spec.conf.validate().is_ok());
            }
            Request::List { selector } | Request::Watch { selector } => {
                assert!(nsagent::model::labels::validate(selector).is_ok());
            }
            _ => {}
        }
    }
    // Whatever the outcome, the response encodes to one line of JSON.
    let r = d.request.map(|_| {
        Response::Pong(Pong {
            version: String::new(),
        })
    });
    let line = encode(&d.id, &r);
    assert!(!line.contains(&b'\n'));
    assert!(serde_json::from_slice::<serde_json::Value>(&line).is_ok());
});
