//! `nsagent-cni`, the CNI plugin (nsagent::cni), in a binary of its own: a runtime executes it
//! once per container and verb, and the small binary starts ~0.5 ms sooner than the agent's
//! (fewer pages, relocations and libraries to map: benches/results/2026-12-07-cni.md).

fn main() {
    std::process::exit(nsagent::cni::main());
}
