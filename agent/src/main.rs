//! The `nsagent` binary: the agent (`nsagent run`) and its client, both in the library.

fn main() {
    std::process::exit(nsagent::cli::main());
}
