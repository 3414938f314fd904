# The sandbox's network, run inside a fresh mount+network namespace: a private /run (so
# /run/netns is the sandbox's own), a private /etc/netns (a tmpfs on an overlay of /etc, so that
# not even an empty /etc/netns directory appears on the host), and an "upstream" namespace behind
# an uplink veth that plays the host's upstream (198.18.0.1 and 2001:2::1 here, 198.18.0.2 and
# 2001:2::2 upstream, default routes through it).
# Shared by scripts/sandbox.sh, the integration tests and the benchmark.
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /run/etc-overlay/upper /run/etc-overlay/work
mount -t overlay overlay \
    -o lowerdir=/etc,upperdir=/run/etc-overlay/upper,workdir=/run/etc-overlay/work /etc
mkdir -p /etc/netns
mount -t tmpfs -o mode=0755 tmpfs /etc/netns
ip link set lo up
ip netns add upstream
ip link add uplink0 type veth peer name up0 netns upstream
ip addr add 198.18.0.1/30 dev uplink0
ip link set uplink0 up
ip -n upstream addr add 198.18.0.2/30 dev up0
ip -n upstream link set up0 up
ip -n upstream link set lo up
ip route add default via 198.18.0.2
# IPv6 too (the benchmarking range): uplink 2001:2::1, upstream 2001:2::2.
ip addr add 2001:2::1/64 dev uplink0 nodad
ip -n upstream addr add 2001:2::2/64 dev up0 nodad
ip -6 route add default via 2001:2::2
