#!/usr/bin/env bash
# The main job, end to end on one machine: build the file bots, bring up the namespace lab (two
# LANs behind NATs, a real XMPP server (Prosody, or ejabberd) and a real coturn STUN/TURN server,
# installing them if missing), log the two bots in, send a file from LAN A to LAN B peer-to-peer over an
# encrypted WebRTC data channel, and print what happened: candidates, selected pair, time to
# connect, throughput, and the hash checked end to end. Tears the lab down on exit.
#
#   sudo bash tests/lab/story.sh
#
# Settings (environment): SIZE_MIB (64), NAT_A and NAT_B (port-restricted; see lab.sh for the
# types), XMPP_SERVER (prosody, or ejabberd for Debian's ejabberd 23.01). Needs root for the
# network namespaces.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZE_MIB=${SIZE_MIB:-64}
NAT_A=${NAT_A:-port-restricted}
NAT_B=${NAT_B:-port-restricted}
XMPP_SERVER=${XMPP_SERVER:-prosody}

die() { echo "story.sh: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "needs root for the network namespaces: sudo bash tests/lab/story.sh"
[[ $SIZE_MIB =~ ^[0-9]+$ ]] || die "SIZE_MIB must be a number of MiB"
case $XMPP_SERVER in
prosody) server_name=Prosody ;;
ejabberd) server_name=ejabberd ;;
*) die "XMPP_SERVER must be prosody or ejabberd" ;;
esac

echo "== building the bots (cargo build --release --example send_file --example recv_file)"
cargo build --release --quiet --example send_file --example recv_file
bin=${CARGO_TARGET_DIR:-target}/release/examples

prefix="st$((RANDOM % 100000))"
work=$(mktemp -d "${TMPDIR:-/tmp}/jingle-ice-story.XXXXXX")
cleanup() {
    [[ -n ${recv_pid:-} ]] && kill "$recv_pid" 2>/dev/null || true
    bash tests/lab/lab.sh down --prefix "$prefix" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== the lab: LAN A behind a $NAT_A NAT, LAN B behind a $NAT_B NAT, $server_name, coturn"
env_text=$(bash tests/lab/lab.sh up --prefix "$prefix" --nat-a "$NAT_A" --nat-b "$NAT_B" --turn \
    --xmpp-server "$XMPP_SERVER")
eval "$env_text"

mkdir -p "$work/a" "$work/b"
file="$work/a/story.bin"
echo "== a file of $SIZE_MIB MiB in LAN A"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$file"
sent_hash=$(sha256sum "$file" | cut -d' ' -f1)
echo "sha-256 $sent_hash"

login() { # account number
    local jid="LAB_XMPP_JID$1" pw="LAB_XMPP_PASSWORD$1"
    printf '%s\n' --jid "${!jid}" --password "${!pw}" --server "$LAB_XMPP_ADDR" --ca "$LAB_CA"
}

echo "== bob logs in from LAN B and waits for files from alice"
mapfile -t bob_login < <(login 2)
ip netns exec "$LAB_NS_B" timeout 900 "$bin/recv_file" "${bob_login[@]}" \
    --dir "$work/b" --from "$LAB_XMPP_JID1" >"$work/bob.out" 2>&1 &
recv_pid=$!
for _ in $(seq 1 600); do
    grep -q '^ready' "$work/bob.out" 2>/dev/null && break
    kill -0 "$recv_pid" 2>/dev/null || { cat "$work/bob.out" >&2; die "recv_file exited"; }
    sleep 0.1
done
grep -q '^ready' "$work/bob.out" || { cat "$work/bob.out" >&2; die "recv_file did not log in"; }
bob_jid=$(sed -n 's/^jid //p' "$work/bob.out" | head -n 1)
sed 's/^/[bob]   /' "$work/bob.out"

echo "== alice logs in from LAN A and sends the file to $bob_jid"
mapfile -t alice_login < <(login 1)
status=0
ip netns exec "$LAB_NS_A" timeout 900 "$bin/send_file" "${alice_login[@]}" \
    --to "$bob_jid" "$file" 2>&1 | sed 's/^/[alice] /' || status=$?
wait "$recv_pid" || status=$?
recv_pid=
sed 's/^/[bob]   /' "$work/bob.out" | tail -n +3
[[ $status -eq 0 ]] || die "the transfer failed (exit $status)"

stored="$work/b/story.bin"
[[ -f $stored ]] || die "no file at $stored"
got_hash=$(sha256sum "$stored" | cut -d' ' -f1)
[[ $got_hash == "$sent_hash" ]] || die "hash mismatch: sent $sent_hash, stored $got_hash"
leftovers=$(find "$work/b" -name '*.part' | wc -l)
[[ $leftovers -eq 0 ]] || die "$leftovers part files left"
echo "== done: $SIZE_MIB MiB from LAN A to LAN B peer-to-peer, sha-256 $got_hash verified end to end"
