//! Name and subnet validation: never panics; what passes is safe to use as a path component,
//! an interface name or a namespace subnet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nsagent::model::{validate_ifname, validate_name, Subnet};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if validate_name(s).is_ok() {
        assert!(!s.is_empty() && s.len() <= 64);
        assert!(!s.contains('/') && !s.contains('\0') && s != "." && s != "..");
        assert!(s.is_ascii());
    }
    if validate_ifname(s).is_ok() {
        assert!(!s.is_empty() && s.len() < 16);
        assert!(!s.contains('/') && !s.contains(':') && !s.contains(char::is_whitespace));
    }
    for min in [30u8, 31] {
        if let Ok(n) = Subnet::parse_for_namespace(s, min) {
            assert!(n.prefix >= min && n.prefix <= 31);
            assert_eq!(u32::from(n.network) & !n.mask(), 0);
            let (gw, addr) = n.gateway_and_address();
            assert!(u32::from(gw) >= n.start() && u32::from(addr) <= n.end());
            assert_ne!(gw, addr);
        }
    }
    if let Ok(p) = Subnet::parse_pool(s) {
        assert!(p.prefix <= 31);
    }
});
