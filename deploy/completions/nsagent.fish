# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_nsagent_global_optspecs
    string join \n h/help V/version
end

function __fish_nsagent_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_nsagent_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_nsagent_using_subcommand
    set -l cmd (__fish_nsagent_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c nsagent -n "__fish_nsagent_needs_command" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_needs_command" -s V -l version -d 'Print version'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "run" -d 'Run the agent'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "add" -d 'Create a namespace, or --count of them'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "set" -d 'Change a namespace\'s NAT, ports, egress address, rate limits, DNS or labels'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "del" -d 'Delete namespaces by name, every one whose name has a --prefix, or by label'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "list" -d 'List the namespaces (all, or those with the given labels)'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "watch" -d 'Print every change to namespaces as it happens, until interrupted'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "check" -d 'Compare the kernel with the agent\'s view of every namespace; --repair puts back what is missing'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "show" -d 'Show one namespace'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "status" -d 'Show the agent\'s status'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "exec" -d 'Run a command inside a namespace\'s network namespace'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "man" -d 'Print the man page (roff)'
complete -c nsagent -n "__fish_nsagent_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l config -d 'Configuration file (TOML; keys are these flags\' names with `_`). Precedence: flag > environment > file > default. A missing default file is fine' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l socket -d 'Unix socket to serve the protocol on' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l netns-dir -d 'Directory of named network namespaces (as `ip netns` uses)' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l etc-netns-dir -d 'Directory of per-namespace /etc overrides (as `ip netns exec` uses): a namespace\'s `dns` goes to NAME/resolv.conf in it' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l uplink -d 'Interface namespace traffic leaves through. Default: the default route\'s interface; `none`: any interface that is not a namespace\'s' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l pool -d 'Address pool that namespace subnets are allocated from' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l pool6 -d 'IPv6 pool namespace subnets are allocated from (every namespace is dual stack unless it asks not to be); `none`: IPv4 only' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l prefix-len6 -d 'Prefix length of each namespace\'s IPv6 subnet (64-127; 127 per RFC 6164)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l prefix-len -d 'Prefix length of each namespace\'s subnet (30 or 31)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l table -d 'Name of the nft table (family inet) the agent owns' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l max-batch -d 'Most commands the executor takes into one batch' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l queue-capacity -d 'Capacity of the command queue' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l socket-mode -d 'Mode of the socket file (octal)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l socket-group -d 'Group owning the socket file (name or number); its members may connect' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l allow-uid -d 'Uids allowed to talk to the agent besides root (comma-separated)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l allow-gid -d 'Gids (the peer\'s primary group) allowed to talk to the agent (comma-separated)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l warm -d 'Namespaces to keep built ahead, so that a create they can serve is answered without waiting for the kernel (0: none)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l check-interval -d 'Seconds between the agent\'s own checks of every namespace against the kernel, which repair what drifted (0: only `nsagent check`)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l metrics-addr -d 'Address of the HTTP endpoint (/metrics, /healthz, /readyz); `off` disables it' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l log-level -d 'Log filter (tracing EnvFilter syntax), e.g. `info` or `nsagent=debug`' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l log-format -d 'Log line format' -r -f -a "text\t'Human-readable lines (colored on a terminal)'
json\t'One JSON object per line (journald, Loki, ELK)'"
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l check-config -d 'Validate the configuration, print the effective one, and exit'
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -l cleanup-on-exit -d 'On SIGTERM/SIGINT, remove every namespace the agent made and its table'
complete -c nsagent -n "__fish_nsagent_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l count -d 'Create N namespaces named PREFIX0 .. PREFIX<N-1>, pipelined on one connection' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l prefix -d 'Name prefix of the namespaces --count creates' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l subnet -d 'Subnet a.b.c.d/len (default: allocated from the agent\'s pool)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l subnet6 -d 'IPv6 subnet addr/len (default: allocated from the agent\'s IPv6 pool, if it has one)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l mtu -d 'MTU of the veth pair (68-65535)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l dns -d 'Nameserver for the namespace\'s resolv.conf (up to 3; repeat the flag)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l dns-search -d 'Search domain for the namespace\'s resolv.conf (repeat the flag)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l dns-option -d 'resolv.conf option, e.g. ndots:2 (repeat the flag)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l rate -d 'Rate limit, tc-style (10mbit, 500kbit, 1gbit, or bits/s): `RATE` both ways, `in:RATE` into the namespace, `out:RATE` out of it (repeat the flag)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -s p -l port -d 'Publish a port: `[tcp/|udp/][HOST_ADDR:]HOST_PORT:PORT` (repeat the flag), e.g. 8080:80, udp/5353:53, 198.18.0.1:8443:443' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l egress -d 'Address (one of the host\'s) the namespace\'s outbound traffic leaves from' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l egress6 -d 'The same for its IPv6 traffic (a dual-stack namespace)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -s l -l label -d 'A label, KEY=VALUE (repeat the flag; `set` replaces every label with those given)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l socket -d 'Unix socket of the agent' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l no-nat -d 'Do not masquerade the namespace\'s traffic'
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l no-ipv6 -d 'IPv4 only, even when the agent has an IPv6 pool'
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -l json -d 'Print the protocol\'s result object(s) as one JSON document instead of a table'
complete -c nsagent -n "__fish_nsagent_using_subcommand add" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l dns -d 'Nameserver for the namespace\'s resolv.conf (up to 3; repeat the flag)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l dns-search -d 'Search domain for the namespace\'s resolv.conf (repeat the flag)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l dns-option -d 'resolv.conf option, e.g. ndots:2 (repeat the flag)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l rate -d 'Rate limit, tc-style (10mbit, 500kbit, 1gbit, or bits/s): `RATE` both ways, `in:RATE` into the namespace, `out:RATE` out of it (repeat the flag)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -s p -l port -d 'Publish a port: `[tcp/|udp/][HOST_ADDR:]HOST_PORT:PORT` (repeat the flag), e.g. 8080:80, udp/5353:53, 198.18.0.1:8443:443' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l egress -d 'Address (one of the host\'s) the namespace\'s outbound traffic leaves from' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l egress6 -d 'The same for its IPv6 traffic (a dual-stack namespace)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -s l -l label -d 'A label, KEY=VALUE (repeat the flag; `set` replaces every label with those given)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l socket -d 'Unix socket of the agent' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l nat -d 'Masquerade the namespace\'s traffic'
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l no-nat -d 'Do not masquerade the namespace\'s traffic'
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l no-ports -d 'Remove every published port'
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l no-egress -d 'Masquerade outbound traffic again instead of SNATing it to an egress address'
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l no-rate -d 'Remove the rate limits'
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l no-dns -d 'Remove the resolv.conf'
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l no-labels -d 'Remove every label'
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -l json -d 'Print the protocol\'s result object(s) as one JSON document instead of a table'
complete -c nsagent -n "__fish_nsagent_using_subcommand set" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand del" -l prefix -d 'Delete every namespace whose name starts with PREFIX (listed, then deleted pipelined)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand del" -s l -l label -d 'Delete every namespace that carries the label KEY=VALUE (repeat: every one of them; with --prefix: both)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand del" -l socket -d 'Unix socket of the agent' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand del" -l json -d 'Print the protocol\'s result object(s) as one JSON document instead of a table'
complete -c nsagent -n "__fish_nsagent_using_subcommand del" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand list" -s l -l label -d 'Only namespaces that carry the label KEY=VALUE (repeat: every one of them)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand list" -l socket -d 'Unix socket of the agent' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand list" -l json -d 'Print the protocol\'s result object(s) as one JSON document instead of a table'
complete -c nsagent -n "__fish_nsagent_using_subcommand list" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand watch" -s l -l label -d 'Only namespaces that carry the label KEY=VALUE (repeat: every one of them)' -r
complete -c nsagent -n "__fish_nsagent_using_subcommand watch" -l socket -d 'Unix socket of the agent' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand watch" -l json -d 'Print the protocol\'s result object(s) as one JSON document instead of a table'
complete -c nsagent -n "__fish_nsagent_using_subcommand watch" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand check" -l socket -d 'Unix socket of the agent' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand check" -l repair -d 'Put back what is missing (and say what was)'
complete -c nsagent -n "__fish_nsagent_using_subcommand check" -l json -d 'Print the protocol\'s result object(s) as one JSON document instead of a table'
complete -c nsagent -n "__fish_nsagent_using_subcommand check" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand show" -l socket -d 'Unix socket of the agent' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand show" -l json -d 'Print the protocol\'s result object(s) as one JSON document instead of a table'
complete -c nsagent -n "__fish_nsagent_using_subcommand show" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand status" -l socket -d 'Unix socket of the agent' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand status" -l json -d 'Print the protocol\'s result object(s) as one JSON document instead of a table'
complete -c nsagent -n "__fish_nsagent_using_subcommand status" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand exec" -l socket -d 'Unix socket of the agent' -r -F
complete -c nsagent -n "__fish_nsagent_using_subcommand exec" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand completions" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand man" -s h -l help -d 'Print help'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "run" -d 'Run the agent'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "add" -d 'Create a namespace, or --count of them'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "set" -d 'Change a namespace\'s NAT, ports, egress address, rate limits, DNS or labels'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "del" -d 'Delete namespaces by name, every one whose name has a --prefix, or by label'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "list" -d 'List the namespaces (all, or those with the given labels)'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "watch" -d 'Print every change to namespaces as it happens, until interrupted'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "check" -d 'Compare the kernel with the agent\'s view of every namespace; --repair puts back what is missing'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "show" -d 'Show one namespace'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "status" -d 'Show the agent\'s status'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "exec" -d 'Run a command inside a namespace\'s network namespace'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "man" -d 'Print the man page (roff)'
complete -c nsagent -n "__fish_nsagent_using_subcommand help; and not __fish_seen_subcommand_from run add set del list watch check show status exec completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
