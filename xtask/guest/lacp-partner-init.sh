#!/bin/busybox sh
# The LACP partner VM's /init (`lab: lacp-partner`, xtask/src/partner.rs): the switch at the other
# end of a guest's 802.3ad bond. It bonds its first two NICs (the guest's links) in mode 802.3ad,
# LACP rate fast, miimon 100, bridges the bond with its third NIC (on the lab's bridge, where
# dnsmasq and the HTTP server are), says `lacp-partner: ready`, then prints /proc/net/bonding/bond0
# every 2 s. Its console is the lab log `partner`. It never exits: the lab kills its qemu.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "lacp-partner: $*"; }
while read -r module; do insmod "/lib/modules/$module" || say "FAILED: insmod $module"; done < /etc/modules
# Loading bonding made bond0 already (its max_bonds is 1 by default); make it if not.
[ -d /sys/class/net/bond0 ] || echo +bond0 > /sys/class/net/bonding_masters
bonding=/sys/class/net/bond0/bonding
echo 802.3ad > $bonding/mode
echo fast > $bonding/lacp_rate
echo 100 > $bonding/miimon
for nic in eth0 eth1; do
    ip link set "$nic" down
    echo "+$nic" > $bonding/slaves || say "FAILED: enslaving $nic"
done
ip link set bond0 up
brctl addbr br0
brctl stp br0 off
brctl setfd br0 0
brctl addif br0 bond0
brctl addif br0 eth2
ip link set eth2 up
ip link set br0 up
say "ready: bond0 over $(cat $bonding/slaves), bridged with eth2"
while :; do
    sleep 2
    sed 's/^/lacp-partner: /' /proc/net/bonding/bond0
done
