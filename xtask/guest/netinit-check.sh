#!/bin/sh
# netinit-check NAME [modloop]: run by a booted test root's own service manager (an OpenRC service,
# a zinit oneshot, the Zero-OS stand-in), it checks from inside the booted system what netinit handed
# over and prints one line per fact, then NETINIT-<NAME>-OK, or NETINIT-<NAME>-FAILED and what failed.
# With `modloop`, also that Alpine's modloop service left /lib/modules the image's and fetched nothing.
# It always exits 0: the verdict is the line, and what runs after it (a poweroff) must still run;
# /run/netinit-check.done says it is done.
name=$1
exec >/dev/console 2>&1 # zinit keeps a service's output in memory; the test reads the console
failed=""
say() { echo "netinit-check: $*"; }
check() {
	what=$1
	shift
	if "$@"; then say "$what=ok"; else say "$what=FAILED"; failed="$failed $what"; fi
}
mounted() { awk -v p="$1" -v t="$2" '$2 == p && $3 == t { m = 1 } END { exit !m }' /proc/mounts; }
has_address() { ip -4 -o addr show dev "$INTERFACE" | grep -q " $ADDRESS/$PREFIX "; }
INTERFACE=none
[ -f /run/netinit/lease ] && . /run/netinit/lease
check lease [ -s /run/netinit/lease ]
check resolv.conf [ -s /etc/resolv.conf ]
check "address $ADDRESS/$PREFIX on $INTERFACE" has_address
check "root is the overlay" mounted / overlay
check "/dev/pts is devpts" mounted /dev/pts devpts
check "/dev/shm is tmpfs" mounted /dev/shm tmpfs
say "pid 1 is $(readlink /proc/1/exe)"
if [ "$2" = modloop ]; then
	release=$(uname -r)
	check "/lib/modules/$release is the image's" [ -f "/lib/modules/$release/modules.builtin" ]
	check "no image downloaded into /lib" [ -z "$(ls /lib/*.squashfs 2>/dev/null)" ]
	check "no modloop= in /proc/cmdline" sh -c '! grep -q modloop= /proc/cmdline'
	say "/lib/modules -> $(readlink /lib/modules)"
fi
if [ -z "$failed" ]; then echo "NETINIT-$name-OK"; else echo "NETINIT-$name-FAILED:$failed"; fi
: >/run/netinit-check.done # for whoever waits for the verdict
exit 0
