#!/bin/busybox sh
# The reference of `cargo xtask bench boot`: the same job as netinit done the simplest way, by a
# busybox shell. insmod of the modules in /etc/modules (in order), udhcpc, wget into a tmpfs (piped
# through sha256sum when bench.sha256= is given), loop mount, tmpfs overlay, switch_root.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "netinit-bench-shell: $*"; }
fail() { say "FAILED: $*"; poweroff -f; }
now() { cut -d' ' -f1 /proc/uptime; }
for word in $(cat /proc/cmdline); do
    case "$word" in
        bench.url=*) url=${word#bench.url=} ;;
        bench.sha256=*) sha256=${word#bench.sha256=} ;;
    esac
done
while read -r module; do insmod "/lib/modules/$module" || fail "insmod $module"; done < /etc/modules
ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 10 -T 1 -s /etc/udhcpc.script >/dev/null 2>&1 || fail "no DHCP lease"
mkdir -p /image /lower /rw /newroot
mount -t tmpfs -o mode=0755 tmpfs /image
start=$(now)
if [ -n "$sha256" ]; then
    got=$(wget -q -O - "$url" | tee /image/root.squashfs | sha256sum | cut -d' ' -f1)
    [ "$got" = "$sha256" ] || fail "sha256 $got, expected $sha256"
    checked=", sha256 checked"
else
    wget -q -O /image/root.squashfs "$url" || fail "wget $url"
fi
end=$(now)
say "fetched $(stat -c %s /image/root.squashfs) bytes from $start to $end$checked"
mount -o loop,ro -t squashfs /image/root.squashfs /lower || fail "mounting the image"
mount -t tmpfs tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "overlay"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
