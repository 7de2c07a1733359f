#!/usr/bin/env bash
# The jingle-ice namespace lab: a small internet in Linux network namespaces.
#
#   lab.sh up --prefix P --nat-a TYPE --nat-b TYPE [--same-lan] [--turn] [--xmpp]
#             [--xmpp-server prosody|ejabberd] [--env FILE]
#   lab.sh down --prefix P
#   lab.sh stop-turn --prefix P     (kill the main coturn: its allocations are gone)
#   lab.sh start-turn --prefix P    (start it again with the same settings)
#   lab.sh restart-xmpp --prefix P [--down SECS]
#                                   (stop Prosody cleanly, keep it down SECS, start it again)
#
# TYPE is none | full-cone | port-restricted | symmetric | udp-blocked. --xmpp-server picks the
# XMPP server of --xmpp (and implies it): Prosody (the default) or Debian's ejabberd.
# See tests/lab/README.md for the topology and the NAT rules. Needs root. Every name (namespaces,
# interfaces, the work directory) starts with the prefix, so two runs never collide; `down` is
# idempotent and also cleans up after a half-finished `up`.
set -euo pipefail

# ---- constants -------------------------------------------------------------------------------
# Documentation and private ranges only (RFC 5737 TEST-NET-3 for the "internet", RFC 1918 LANs).
PUB_NET=203.0.113
TURN_IP=$PUB_NET.10
CORE_IP=$PUB_NET.254 # the public bridge's own address: a black-hole default route
TURN_STATIC_IP=$PUB_NET.11 # a second coturn for the static user (see start_coturn)
XMPP_IP=$PUB_NET.20
WAN_A_IP=$PUB_NET.101
WAN_B_IP=$PUB_NET.102
PUB_A_IP=$PUB_NET.51 # host A when --nat-a none
PUB_B_IP=$PUB_NET.52 # host B when --nat-b none
LAN_A_NET=10.0.1
LAN_B_NET=10.0.2
STUN_PORT=3478 # RFC 8489 §18.6 default STUN/TURN port
TURNS_PORT=5349 # RFC 8489 §18.6 / RFC 8656 default STUN/TURN over TLS port
XMPP_C2S_PORT=5222 # RFC 6120 §14.7 client-to-server port
EJABBERDCTL=/usr/sbin/ejabberdctl # Debian's ejabberd start and control script
DOMAIN=example.test
REALM=example.test
WAIT_SECS=${LAB_WAIT_SECS:-20}     # bound for every wait on a server
APT_TIMEOUT=${LAB_APT_TIMEOUT:-600} # bound for installing missing packages

die() { echo "lab.sh: $*" >&2; exit 1; }
log() { [[ -n ${LAB_QUIET:-} ]] || echo "lab.sh: $*" >&2; }

usage() {
    sed -n '2,16p' "$0" >&2
    exit 2
}

check_prefix() {
    [[ $1 =~ ^[a-z][a-z0-9]{0,7}$ ]] ||
        die "prefix '$1' must be 1-8 chars of [a-z0-9] starting with a letter (interface names are limited to 15 chars)"
}

workdir_of() { echo "${LAB_TMP:-/tmp}/jingle-ice-lab.$1"; }

# ---- down ------------------------------------------------------------------------------------
lab_down() {
    local p=$1 ns pid dir
    check_prefix "$p"
    dir=$(workdir_of "$p")
    # Processes first: everything running inside one of our namespaces is ours.
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${p}-" || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
            kill -TERM "$pid" 2>/dev/null || true
        done
    done
    # Give them a bounded moment, then insist.
    local deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        local left=0
        for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${p}-" || true); do
            [[ -z $(ip netns pids "$ns" 2>/dev/null || true) ]] || left=1
        done
        ((left)) || break
        sleep 0.1
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${p}-" || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        # Deleting a namespace deletes the veth ends and bridges inside it.
        ip netns del "$ns" 2>/dev/null || true
    done
    if [[ -d $dir ]]; then
        if [[ -n ${LAB_KEEP_LOGS:-} ]]; then echo "lab: logs kept in $dir" >&2; else rm -rf -- "$dir"; fi
    fi
    log "down: prefix $p removed"
}

# ---- helpers for up --------------------------------------------------------------------------
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

new_ns() {
    ip netns add "$1"
    nsx "$1" ip link set lo up
    # No IPv6 in the lab: no link-local candidates, no DAD delays.
    nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    nsx "$1" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
}

# veth NS1 IF1 NS2 IF2: a cable between two namespaces (created in place, never in the root one).
veth() {
    ip link add name "$2" netns "$1" type veth peer name "$4" netns "$3"
    nsx "$1" ip link set "$2" up
    nsx "$3" ip link set "$4" up
}

bridge() { # bridge NS NAME
    nsx "$1" ip link add name "$2" type bridge
    nsx "$1" ip link set "$2" up
}

attach() { nsx "$1" ip link set "$2" master "$3"; }

# host NS IF ADDR/LEN GATEWAY
host_addr() {
    nsx "$1" ip addr add "$3" dev "$2"
    if [[ -n ${4:-} ]]; then nsx "$1" ip route add default via "$4"; fi
}

need_cmd() { command -v "$1" >/dev/null 2>&1; }

ensure_packages() {
    local want=() pkgs
    need_cmd ip || want+=(iproute2)
    need_cmd iptables || want+=(iptables)
    need_cmd openssl || want+=(openssl)
    need_cmd ss || want+=(iproute2)
    [[ -x /bin/kill || -x /usr/bin/kill ]] || want+=(procps) # the tests signal bots with kill(1)
    need_cmd turnserver || want+=(coturn) # the STUN server is always there
    if ((USE_XMPP)); then
        case $XMPP_SERVER in
        prosody) need_cmd prosody || want+=(prosody) ;;
        ejabberd) [[ -x $EJABBERDCTL ]] || want+=(ejabberd) ;;
        esac
    fi
    ((${#want[@]})) || return 0
    pkgs=$(printf '%s\n' "${want[@]}" | sort -u | tr '\n' ' ')
    log "installing missing packages: $pkgs(bounded by ${APT_TIMEOUT}s)"
    export DEBIAN_FRONTEND=noninteractive
    timeout "$APT_TIMEOUT" apt-get update -qq >&2 || die "apt-get update failed"
    # shellcheck disable=SC2086
    timeout "$APT_TIMEOUT" apt-get install -y -qq --no-install-recommends $pkgs >&2 ||
        die "apt-get install $pkgs failed"
}

# wait_port NS PROTO IP PORT PID LOGFILE: until something listens on IP:PORT, bounded; fails
# early if PID died.
wait_port() {
    local ns=$1 proto=$2 ip=$3 port=$4 pid=$5 logf=$6 flag
    [[ $proto == udp ]] && flag=-Hlun || flag=-Hltn
    local deadline=$((SECONDS + WAIT_SECS))
    while ((SECONDS < deadline)); do
        if [[ -n $(nsx "$ns" ss $flag "src $ip:$port" 2>/dev/null) ]]; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logf" >&2 || true
            die "process $pid in $ns died before listening on $proto/$port"
        fi
        sleep 0.05
    done
    tail -n 30 "$logf" >&2 || true
    die "nothing listens on $proto/$port in $ns after ${WAIT_SECS}s"
}

# start_bg NS LOGFILE PIDFILE CMD...: a daemon in a namespace, stdio to a file, own session.
start_bg() {
    local ns=$1 logf=$2 pidf=$3
    shift 3
    ip netns exec "$ns" setsid "$@" </dev/null >"$logf" 2>&1 &
    echo $! >"$pidf"
}

# ---- NAT routers -----------------------------------------------------------------------------
# nat_rules NS TYPE WAN LAN LAN_HOST: a home router per TYPE (see tests/lab/README.md).
nat_rules() {
    local ns=$1 type=$2 wan=$3 lan=$4 host=$5
    local ipt=(ip netns exec "$ns" iptables -w 5)
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=1
    case $type in
    port-restricted)
        # Endpoint-independent mapping (plain MASQUERADE keeps the port),
        # address-and-port-dependent filtering (only replies come in).
        "${ipt[@]}" -t nat -A POSTROUTING -o "$wan" -j MASQUERADE
        ;;
    full-cone)
        # Endpoint-independent mapping and filtering: any UDP from the WAN side goes to the
        # LAN's first host, on the same port.
        "${ipt[@]}" -t nat -A POSTROUTING -o "$wan" -j MASQUERADE
        "${ipt[@]}" -t nat -A PREROUTING -i "$wan" -p udp -j DNAT --to-destination "$host"
        "${ipt[@]}" -A FORWARD -i "$wan" -o "$lan" -p udp -d "$host" -j ACCEPT
        ;;
    symmetric)
        # Address-and-port-dependent mapping for UDP: a fresh random port per destination.
        "${ipt[@]}" -t nat -A POSTROUTING -o "$wan" -p udp -j MASQUERADE --random-fully
        "${ipt[@]}" -t nat -A POSTROUTING -o "$wan" -j MASQUERADE
        ;;
    udp-blocked)
        # Only TCP (and ICMP) leaves: UDP from the LAN is dropped.
        "${ipt[@]}" -A FORWARD -i "$lan" -o "$wan" -p udp -j DROP
        "${ipt[@]}" -t nat -A POSTROUTING -o "$wan" -j MASQUERADE
        ;;
    *) die "unknown NAT type $type" ;;
    esac
    # Home-router filtering: from the WAN side only what belongs to a connection from inside.
    "${ipt[@]}" -A FORWARD -i "$wan" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    "${ipt[@]}" -A FORWARD -i "$wan" -j DROP
    # A router drops NEW packets addressed to itself from the WAN side. Without this, a peer's
    # early hole-punching packet creates a conntrack entry that clashes with the LAN host's
    # mapping and MASQUERADE moves the host to another port (DESIGN.md, "Facts checked").
    "${ipt[@]}" -A INPUT -i "$wan" -m conntrack --ctstate NEW -j DROP
}

# ---- certificates ----------------------------------------------------------------------------
make_certs() {
    local d=$1
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$d/ca.key" -out "$d/ca.crt" -days 7 -subj "/CN=jingle-ice lab CA $PREFIX" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    leaf "$d" xmpp "$DOMAIN" "DNS:$DOMAIN,IP:$XMPP_IP"
    leaf "$d" turn "turn.$DOMAIN" "DNS:turn.$DOMAIN,IP:$TURN_IP,IP:$TURN_STATIC_IP"
}

# leaf DIR NAME CN SAN: a CA:FALSE server certificate signed by the lab CA.
leaf() {
    local d=$1 n=$2 cn=$3 san=$4
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$d/$n.key" -out "$d/$n.csr" -subj "/CN=$cn" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "subjectAltName=$san" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" \
        >"$d/$n.ext"
    openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -out "$d/$n.crt" -days 7 -extfile "$d/$n.ext" 2>/dev/null
}

# ---- servers ---------------------------------------------------------------------------------
# coturn_instance NS DIR NAME IP AUTH_ARGS...: one coturn on IP (UDP+TCP 3478, TLS 5349).
coturn_instance() {
    local ns=$1 d=$2 name=$3 ip=$4
    shift 4
    local args=(turnserver -n --no-cli --listening-ip="$ip" --relay-ip="$ip"
        --listening-port="$STUN_PORT" --pidfile="$d/$name.pid" --db="$d/$name.sqlite"
        --log-file=stdout --simple-log --no-dtls "$@")
    # LAB_TURN_VERBOSE=1 makes coturn log every request and its answer.
    [[ -n ${LAB_TURN_VERBOSE:-} ]] && args+=(--verbose)
    # Kept for `start-turn` (a restart with the same settings).
    printf '%q ' "$ns" "${args[@]}" >"$d/$name.cmd"
    start_bg "$ns" "$d/$name.log" "$d/$name.bgpid" "${args[@]}"
}

start_coturn() {
    local ns=$1 d=$2 pid
    if ((USE_TURN)); then
        local tls=(--tls-listening-port="$TURNS_PORT" --cert="$d/certs/turn.crt"
            --pkey="$d/certs/turn.key")
        # Ephemeral credentials (XEP-0215 / mod_turn_external): username "expiry[:user]",
        # password base64(HMAC-SHA1(secret, username)).
        coturn_instance "$ns" "$d" turnserver "$TURN_IP" --realm="$REALM" \
            --use-auth-secret --static-auth-secret="$TURN_SECRET" "${tls[@]}"
        # coturn refuses static users (--user) while use-auth-secret is on ("Cannot find
        # credentials of user"), so the static user gets its own instance on a second address.
        coturn_instance "$ns" "$d" turnstatic "$TURN_STATIC_IP" --realm="$REALM" \
            --lt-cred-mech --user="$TURN_USER:$TURN_PASSWORD" "${tls[@]}"
        local name ip
        for name in turnserver turnstatic; do
            [[ $name == turnserver ]] && ip=$TURN_IP || ip=$TURN_STATIC_IP
            pid=$(cat "$d/$name.bgpid")
            wait_port "$ns" udp "$ip" "$STUN_PORT" "$pid" "$d/$name.log"
            wait_port "$ns" tcp "$ip" "$STUN_PORT" "$pid" "$d/$name.log"
            wait_port "$ns" tcp "$ip" "$TURNS_PORT" "$pid" "$d/$name.log"
        done
    else
        coturn_instance "$ns" "$d" turnserver "$TURN_IP" --stun-only --no-tls --no-tcp
        pid=$(cat "$d/turnserver.bgpid")
        wait_port "$ns" udp "$TURN_IP" "$STUN_PORT" "$pid" "$d/turnserver.log"
    fi
}

start_prosody() {
    local ns=$1 d=$2/prosody
    mkdir -p "$d/data" "$d/certs"
    cp "$2/certs/xmpp.crt" "$d/certs/$DOMAIN.crt"
    cp "$2/certs/xmpp.key" "$d/certs/$DOMAIN.key"
    cat >"$d/prosody.cfg.lua" <<EOF
-- Generated by tests/lab/lab.sh for prefix $PREFIX
pidfile = "$d/prosody.pid"
data_path = "$d/data"
log = { { levels = { min = "info" }, to = "console" } }
interfaces = { "$XMPP_IP" }
c2s_ports = { $XMPP_C2S_PORT }
s2s_ports = { }
http_ports = { }
https_ports = { }
c2s_direct_tls_ports = { }
admins = { }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = false
modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "time"; "version";
    "external_services"; "turn_external";
}
modules_disabled = { "s2s" }
turn_external_host = "$TURN_IP"
turn_external_port = $STUN_PORT
turn_external_secret = "$TURN_SECRET"
turn_external_ttl = 86400
turn_external_tcp = true
certificates = "$d/certs"
VirtualHost "$DOMAIN"
    ssl = { certificate = "$d/certs/$DOMAIN.crt"; key = "$d/certs/$DOMAIN.key" }
EOF
    chown -R prosody:prosody "$d"
    chmod 755 "$2"
    local i
    for i in 1 2; do
        runuser -u prosody -- prosodyctl --config "$d/prosody.cfg.lua" register \
            "${XMPP_USERS[$i]}" "$DOMAIN" "${XMPP_PASSWORDS[$i]}" >>"$d/register.log" 2>&1 ||
            { cat "$d/register.log" >&2; die "prosodyctl register ${XMPP_USERS[$i]} failed"; }
    done
    start_bg "$ns" "$d/prosody.log" "$d/prosody.bgpid" \
        runuser -u prosody -- prosody --config "$d/prosody.cfg.lua" -F
    wait_port "$ns" tcp "$XMPP_IP" "$XMPP_C2S_PORT" "$(cat "$d/prosody.bgpid")" "$d/prosody.log"
}

# ejabberd_ctl NS DIR ARGS...: Debian's ejabberdctl for the lab's ejabberd in DIR, in namespace
# NS. Run as root, ejabberdctl would `su` to the ejabberd user itself (it refuses every other
# user); run as that user it executes directly. HOME is the lab's directory, so the Erlang
# cookie (~/.erlang.cookie) belongs to this lab, not to the system's ejabberd.
ejabberd_ctl() {
    local ns=$1 d=$2
    shift 2
    nsx "$ns" runuser -u ejabberd -- env HOME="$d" "$EJABBERDCTL" --config-dir "$d/conf" \
        --spool "$d/spool" --logs "$d/logs" "$@"
}

start_ejabberd() {
    local ns=$1 d=$2/ejabberd
    mkdir -p "$d/conf" "$d/spool" "$d/logs" "$d/certs"
    # ejabberd reads certificate and key from one PEM file.
    cat "$2/certs/xmpp.crt" "$2/certs/xmpp.key" >"$d/certs/$DOMAIN.pem"
    chmod 600 "$d/certs/$DOMAIN.pem"
    cp "$2/certs/ca.crt" "$d/certs/ca.crt"
    # ejabberdctl's own settings (it sources this file): a node name of this lab, Erlang
    # distribution and epmd on the namespace's loopback only (epmd is per network namespace:
    # erl starts one in ours), the pid file here instead of /run/ejabberd.
    cat >"$d/conf/ejabberdctl.cfg" <<CFG
# Generated by tests/lab/lab.sh for prefix $PREFIX
ERLANG_NODE=ejabberd-$PREFIX@localhost
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface {127,0,0,1}"
ERL_EPMD_ADDRESS=127.0.0.1
EJABBERD_PID_PATH=$d/ejabberd.pid
EJABBERD_BYPASS_WARNINGS=true
CFG
    # Erlang's resolver settings (ejabberdctl points ERL_INETRC here), as Debian ships them.
    cat >"$d/conf/inetrc" <<CFG
{lookup,["file","native"]}.
{host,{127,0,0,1}, ["localhost","hostalias"]}.
{file, resolv, "/etc/resolv.conf"}.
CFG
    # Debian's stock ejabberd.yml cut down to the c2s essentials (the same TLS options, SCRAM
    # password storage, SASL mechanisms and c2s listener settings), with the lab's host,
    # address, certificate, paths and STUN/TURN services, and the c2s shaper raised: the stock
    # 3000 B/s would make In-Band Bytestreams crawl.
    cat >"$d/conf/ejabberd.yml" <<CFG
# Generated by tests/lab/lab.sh for prefix $PREFIX
loglevel: info
log_rotate_count: 0
hosts:
  - "$DOMAIN"
certfiles:
  - "$d/certs/$DOMAIN.pem"
# The lab CA, so that ejabberd can check its own certificate chain.
ca_file: "$d/certs/ca.crt"
define_macro:
  'TLS_CIPHERS': "HIGH:!aNULL:!eNULL:!3DES:@STRENGTH"
  'TLS_OPTIONS':
    - "no_sslv3"
    - "no_tlsv1"
    - "no_tlsv1_1"
    - "cipher_server_preference"
    - "no_compression"
c2s_ciphers: 'TLS_CIPHERS'
c2s_protocol_options: 'TLS_OPTIONS'
listen:
  -
    port: $XMPP_C2S_PORT
    ip: "$XMPP_IP"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: c2s_shaper
    access: c2s
    starttls_required: true
    protocol_options: 'TLS_OPTIONS'
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"
auth_method: internal
auth_password_format: scram
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    deny: blocked
    allow: all
shaper:
  normal:
    rate: 10000000
    burst_size: 1000000
shaper_rules:
  max_user_sessions: 10
  c2s_shaper: normal
modules:
  mod_caps: {}
  mod_carboncopy: {}
  mod_client_state: {}
  mod_disco: {}
  mod_fail2ban: {}
  mod_last: {}
  mod_offline: {}
  mod_ping: {}
  mod_roster: {}
  mod_stream_mgmt: {}
  mod_version: {}
  # XEP-0215 on the lab's coturn, with coturn's use-auth-secret credentials: username
  # "expiry:hash", password base64(HMAC-SHA1(secret, username)).
  mod_stun_disco:
    offer_local_services: false
    secret: "$TURN_SECRET"
    credentials_lifetime: 1d
    services:
      -
        host: $TURN_IP
        port: $STUN_PORT
        type: stun
        transport: udp
        restricted: false
      -
        host: $TURN_IP
        port: $STUN_PORT
        type: turn
        transport: udp
        restricted: true
      -
        host: $TURN_IP
        port: $STUN_PORT
        type: turn
        transport: tcp
        restricted: true
CFG
    chown -R ejabberd:ejabberd "$d"
    chmod 755 "$2"
    # In the foreground under setsid like the other daemons: `down` finds it (and the epmd it
    # started) among the namespace's processes.
    start_bg "$ns" "$d/ejabberd.out" "$d/ejabberd.bgpid" \
        runuser -u ejabberd -- env HOME="$d" "$EJABBERDCTL" --config-dir "$d/conf" \
        --spool "$d/spool" --logs "$d/logs" foreground
    wait_port "$ns" tcp "$XMPP_IP" "$XMPP_C2S_PORT" "$(cat "$d/ejabberd.bgpid")" "$d/ejabberd.out"
    # The listener opens after the modules started, so the node takes commands now.
    local i
    for i in 1 2; do
        ejabberd_ctl "$ns" "$d" register "${XMPP_USERS[$i]}" "$DOMAIN" "${XMPP_PASSWORDS[$i]}" \
            >>"$d/register.log" 2>&1 ||
            { cat "$d/register.log" >&2; die "ejabberdctl register ${XMPP_USERS[$i]} failed"; }
    done
}

# ---- up --------------------------------------------------------------------------------------
lab_up() {
    local P=$PREFIX dir
    check_prefix "$P"
    for t in "$NAT_A" "$NAT_B"; do
        case $t in none | full-cone | port-restricted | symmetric | udp-blocked) ;;
        *) die "unknown NAT type '$t'" ;;
        esac
    done
    [[ $(id -u) == 0 ]] || die "the lab needs root (network namespaces, iptables)"
    ip netns list >/dev/null 2>&1 || die "ip netns is not permitted here"
    if ip netns list | awk '{print $1}' | grep -qE "^${P}-"; then
        die "a lab with prefix $P is already up (run: $0 down --prefix $P)"
    fi
    ensure_packages
    dir=$(workdir_of "$P")
    rm -rf -- "$dir"
    mkdir -p "$dir"
    chmod 755 "$dir"
    # From here on, a failure tears down what was built.
    trap 'rc=$?; if ((rc)); then echo "lab.sh: up failed, cleaning up" >&2; lab_down "$PREFIX" || true; fi' EXIT

    TURN_SECRET=$(openssl rand -hex 16)
    TURN_USER=labuser
    TURN_PASSWORD=$(openssl rand -hex 8)
    XMPP_USERS=("" alice bob)
    XMPP_PASSWORDS=("" "$(openssl rand -hex 8)" "$(openssl rand -hex 8)")

    local pub=$P-pub turn=$P-turn xmpp=$P-xmpp rta=$P-rta rtb=$P-rtb nsa=$P-a nsb=$P-b
    new_ns "$pub"
    bridge "$pub" "${P}br"

    # The STUN/TURN host.
    new_ns "$turn"
    veth "$turn" "${P}t" "$pub" "${P}tp"
    attach "$pub" "${P}tp" "${P}br"
    host_addr "$turn" "${P}t" "$TURN_IP/24"
    nsx "$turn" ip addr add "$TURN_STATIC_IP/24" dev "${P}t"
    # The rest of the "internet" is a black hole, as for a real server: a relay asked to send
    # to a private address of some LAN loses the packet silently. (Without a default route
    # the send fails with ENETUNREACH and coturn tears the whole allocation down.)
    nsx "$pub" ip addr add "$CORE_IP/24" dev "${P}br"
    nsx "$pub" sysctl -qw net.ipv4.ip_forward=1
    nsx "$pub" ip route add blackhole default
    nsx "$turn" ip route add default via "$CORE_IP"

    # Host A: on the public network, or behind router A.
    local addr_a addr_b lan_a_if lan_b_if
    new_ns "$nsa"
    if [[ $NAT_A == none ]]; then
        veth "$nsa" "${P}a" "$pub" "${P}ap"
        attach "$pub" "${P}ap" "${P}br"
        addr_a=$PUB_A_IP
        host_addr "$nsa" "${P}a" "$addr_a/24"
    else
        new_ns "$rta"
        veth "$rta" "${P}wa" "$pub" "${P}wap"
        attach "$pub" "${P}wap" "${P}br"
        host_addr "$rta" "${P}wa" "$WAN_A_IP/24"
        bridge "$rta" "${P}la"
        nsx "$rta" ip addr add "$LAN_A_NET.1/24" dev "${P}la"
        veth "$nsa" "${P}a" "$rta" "${P}ap"
        attach "$rta" "${P}ap" "${P}la"
        addr_a=$LAN_A_NET.10
        host_addr "$nsa" "${P}a" "$addr_a/24" "$LAN_A_NET.1"
        lan_a_if=${P}la
    fi

    # Host B: on A's LAN (--same-lan), on the public network, or behind router B.
    new_ns "$nsb"
    if ((SAME_LAN)); then
        [[ $NAT_A != none ]] || die "--same-lan needs a LAN: give --nat-a a NAT type"
        veth "$nsb" "${P}b" "$rta" "${P}bp"
        attach "$rta" "${P}bp" "${P}la"
        addr_b=$LAN_A_NET.11
        host_addr "$nsb" "${P}b" "$addr_b/24" "$LAN_A_NET.1"
        NAT_B=$NAT_A
    elif [[ $NAT_B == none ]]; then
        veth "$nsb" "${P}b" "$pub" "${P}bp"
        attach "$pub" "${P}bp" "${P}br"
        addr_b=$PUB_B_IP
        host_addr "$nsb" "${P}b" "$addr_b/24"
    else
        new_ns "$rtb"
        veth "$rtb" "${P}wb" "$pub" "${P}wbp"
        attach "$pub" "${P}wbp" "${P}br"
        host_addr "$rtb" "${P}wb" "$WAN_B_IP/24"
        bridge "$rtb" "${P}lb"
        nsx "$rtb" ip addr add "$LAN_B_NET.1/24" dev "${P}lb"
        veth "$nsb" "${P}b" "$rtb" "${P}bp"
        attach "$rtb" "${P}bp" "${P}lb"
        addr_b=$LAN_B_NET.10
        host_addr "$nsb" "${P}b" "$addr_b/24" "$LAN_B_NET.1"
        lan_b_if=${P}lb
    fi
    [[ $NAT_A == none ]] || nat_rules "$rta" "$NAT_A" "${P}wa" "$lan_a_if" "$addr_a"
    if ((!SAME_LAN)) && [[ $NAT_B != none ]]; then
        nat_rules "$rtb" "$NAT_B" "${P}wb" "$lan_b_if" "$addr_b"
    fi

    # Certificates from a lab CA, then the servers.
    if ((USE_TURN || USE_XMPP)); then make_certs "$dir/certs"; fi
    start_coturn "$turn" "$dir"
    if ((USE_XMPP)); then
        new_ns "$xmpp"
        veth "$xmpp" "${P}x" "$pub" "${P}xp"
        attach "$pub" "${P}xp" "${P}br"
        host_addr "$xmpp" "${P}x" "$XMPP_IP/24"
        case $XMPP_SERVER in
        prosody) start_prosody "$xmpp" "$dir" ;;
        ejabberd) start_ejabberd "$xmpp" "$dir" ;;
        esac
    fi

    local out
    out=$(
        q() { printf '%s=%q\n' "$1" "$2"; }
        q LAB_PREFIX "$P"
        q LAB_DIR "$dir"
        q LAB_NS_PUB "$pub"
        q LAB_NS_A "$nsa"
        q LAB_NS_B "$nsb"
        q LAB_ADDR_A "$addr_a"
        q LAB_ADDR_B "$addr_b"
        q LAB_NAT_A "$NAT_A"
        q LAB_NAT_B "$NAT_B"
        q LAB_SAME_LAN "$SAME_LAN"
        [[ $NAT_A == none ]] || { q LAB_NS_ROUTER_A "$rta"; q LAB_WAN_A "$WAN_A_IP"; }
        if ((!SAME_LAN)) && [[ $NAT_B != none ]]; then q LAB_NS_ROUTER_B "$rtb"; q LAB_WAN_B "$WAN_B_IP"; fi
        q LAB_NS_TURN "$turn"
        q LAB_STUN "$TURN_IP:$STUN_PORT"
        if ((USE_TURN)); then
            q LAB_TURN_UDP "$TURN_IP:$STUN_PORT"
            q LAB_TURN_TCP "$TURN_IP:$STUN_PORT"
            q LAB_TURN_TLS "$TURN_IP:$TURNS_PORT"
            q LAB_TURN_TLS_NAME "turn.$DOMAIN"
            q LAB_TURN_REALM "$REALM"
            q LAB_TURN_SECRET "$TURN_SECRET"
            q LAB_TURN_STATIC_UDP "$TURN_STATIC_IP:$STUN_PORT"
            q LAB_TURN_STATIC_TCP "$TURN_STATIC_IP:$STUN_PORT"
            q LAB_TURN_STATIC_TLS "$TURN_STATIC_IP:$TURNS_PORT"
            q LAB_TURN_USER "$TURN_USER"
            q LAB_TURN_PASSWORD "$TURN_PASSWORD"
        fi
        if ((USE_XMPP)); then
            q LAB_NS_XMPP "$xmpp"
            q LAB_XMPP_SERVER "$XMPP_SERVER"
            q LAB_XMPP_ADDR "$XMPP_IP:$XMPP_C2S_PORT"
            q LAB_XMPP_DOMAIN "$DOMAIN"
            q LAB_XMPP_JID1 "${XMPP_USERS[1]}@$DOMAIN"
            q LAB_XMPP_PASSWORD1 "${XMPP_PASSWORDS[1]}"
            q LAB_XMPP_JID2 "${XMPP_USERS[2]}@$DOMAIN"
            q LAB_XMPP_PASSWORD2 "${XMPP_PASSWORDS[2]}"
        fi
        if ((USE_TURN || USE_XMPP)); then q LAB_CA "$dir/certs/ca.crt"; fi
    )
    echo "$out" >"$dir/env"
    if [[ -n $ENV_FILE ]]; then echo "$out" >"$ENV_FILE"; else echo "$out"; fi
    trap - EXIT
    log "up: prefix $P ready (A: $NAT_A, B: $NAT_B)"
}

# ---- main ------------------------------------------------------------------------------------
[[ $# -ge 1 ]] || usage
CMD=$1
shift
PREFIX="" NAT_A="" NAT_B="" SAME_LAN=0 USE_TURN=0 USE_XMPP=0 XMPP_SERVER=prosody ENV_FILE=""
DOWN_SECS=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --prefix) PREFIX=${2:?}; shift 2 ;;
    --nat-a) NAT_A=${2:?}; shift 2 ;;
    --nat-b) NAT_B=${2:?}; shift 2 ;;
    --same-lan) SAME_LAN=1; shift ;;
    --turn) USE_TURN=1; shift ;;
    --xmpp) USE_XMPP=1; shift ;;
    --xmpp-server) XMPP_SERVER=${2:?}; USE_XMPP=1; shift 2 ;;
    --env) ENV_FILE=${2:?}; shift 2 ;;
    --down) DOWN_SECS=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) die "unknown argument $1" ;;
    esac
done
[[ -n $PREFIX ]] || die "--prefix is required"
case $XMPP_SERVER in
prosody | ejabberd) ;;
*) die "unknown XMPP server '$XMPP_SERVER' (prosody or ejabberd)" ;;
esac
case $CMD in
up)
    [[ -n $NAT_A ]] || die "--nat-a is required"
    [[ -n $NAT_B ]] || ((SAME_LAN)) || die "--nat-b is required (or --same-lan)"
    NAT_B=${NAT_B:-$NAT_A}
    lab_up
    ;;
down) lab_down "$PREFIX" ;;
stop-turn)
    # Kills the main coturn (STUN/TURN on LAB_TURN_*): its allocations are gone.
    d=$(workdir_of "$PREFIX")
    [[ -f $d/turnserver.bgpid ]] || die "no coturn in lab $PREFIX"
    kill -KILL "$(cat "$d/turnserver.bgpid")" 2>/dev/null || true
    log "stop-turn: coturn of $PREFIX killed"
    ;;
start-turn)
    # Starts the main coturn again with the settings it had (after stop-turn).
    d=$(workdir_of "$PREFIX")
    [[ -f $d/turnserver.cmd ]] || die "no coturn command saved in lab $PREFIX"
    eval "set -- $(cat "$d/turnserver.cmd")"
    ns=$1
    shift
    start_bg "$ns" "$d/turnserver.log.restart" "$d/turnserver.bgpid" "$@"
    ip=$(sed -n 's/.*--listening-ip=\([^ ]*\).*/\1/p' "$d/turnserver.cmd")
    wait_port "$ns" udp "$ip" "$STUN_PORT" "$(cat "$d/turnserver.bgpid")" "$d/turnserver.log.restart"
    log "start-turn: coturn of $PREFIX running again"
    ;;
restart-xmpp)
    # Stops Prosody with SIGTERM (it ends every client stream with <system-shutdown/>, as a
    # real server restart does), waits for it to exit (bounded, then SIGKILL), keeps it down
    # --down SECS, and starts it again with the same configuration, data and accounts.
    [[ $DOWN_SECS =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--down takes seconds"
    d=$(workdir_of "$PREFIX")/prosody
    [[ -f $d/prosody.cfg.lua && -f $d/prosody.bgpid ]] ||
        die "no Prosody in lab $PREFIX (restart-xmpp restarts Prosody only)"
    bg=$(cat "$d/prosody.bgpid")
    pid=$(cat "$d/prosody.pid" 2>/dev/null || echo "$bg")
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + WAIT_SECS))
    while { kill -0 "$pid" || kill -0 "$bg"; } 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.05
    done
    if { kill -0 "$pid" || kill -0 "$bg"; } 2>/dev/null; then
        log "restart-xmpp: Prosody did not stop within ${WAIT_SECS}s: killing it"
        kill -KILL "$pid" "$bg" 2>/dev/null || true
    fi
    log "restart-xmpp: Prosody of $PREFIX stopped"
    sleep "$DOWN_SECS"
    ns=$PREFIX-xmpp
    # The log of the first run is kept (the shutdown is at its end).
    start_bg "$ns" "$d/prosody.log.restart" "$d/prosody.bgpid" \
        runuser -u prosody -- prosody --config "$d/prosody.cfg.lua" -F
    wait_port "$ns" tcp "$XMPP_IP" "$XMPP_C2S_PORT" "$(cat "$d/prosody.bgpid")" "$d/prosody.log.restart"
    log "restart-xmpp: Prosody of $PREFIX running again"
    ;;
*) usage ;;
esac
