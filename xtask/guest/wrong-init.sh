#!/bin/sh
# /sbin/init of the Zero-OS-convention test root: netinit must prefer /sbin/zinit, so this says so.
echo "WRONG-INIT-CHOSEN: /sbin/init ran instead of /sbin/zinit"
poweroff -f
