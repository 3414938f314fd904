//! The `nsagent` binary: the agent (`nsagent run`) and its client, both in the library; and,
//! invoked as `nsagent-cni` (a symlink), the CNI plugin.

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let invoked = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    if invoked.as_deref() == Some("nsagent-cni") {
        std::process::exit(nsagent::cni::main());
    }
    std::process::exit(nsagent::cli::main());
}
