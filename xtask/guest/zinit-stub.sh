#!/bin/sh
# /sbin/zinit of the Zero-OS-convention test root: records how netinit started it (argv, PID,
# environment), runs netinit-check, and powers off. The real zinit of Zero-OS is not packaged.
echo "zinit-stub: argv=$0 $*"
echo "zinit-stub: pid=$$"
env | sort | sed 's/^/zinit-stub: env /'
/usr/libexec/netinit-check ZOS
poweroff -f
