#!/bin/busybox sh
# /init of the initramfs of "rewriter check --boot".  Lines that start with
# "rwb: " mark the steps for rewriter, which reads the serial console.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
echo "rwb: boot ok"
echo "rwb: cmdline $(cat /proc/cmdline)"
echo "rwb: nodes $(ls -d /sys/devices/system/node/node* 2>/dev/null | wc -l) cpus $(grep -c ^processor /proc/cpuinfo)"
# swap on the first ram disk, an ext2 file system on the second
if [ -b /dev/ram0 ]; then mkswap /dev/ram0 >/dev/null && swapon /dev/ram0 && echo "rwb: swap on /dev/ram0"; fi
DIR=/tmp
if [ -b /dev/ram1 ] && mke2fs /dev/ram1 >/dev/null 2>&1 && mount -t ext2 /dev/ram1 /mnt; then DIR=/mnt; fi
echo "rwb: files in $DIR"
[ -w /sys/kernel/mm/lru_gen/enabled ] && echo y > /sys/kernel/mm/lru_gen/enabled
echo "rwb: workload start"
/bin/workload -D -r @ROUNDS@ -t @RACE_SECONDS@ -d "$DIR"
echo "rwb: workload exit $?"
echo "rwb: counts start"
[ -r /sys/kernel/debug/rewriter_inject ] && cat /sys/kernel/debug/rewriter_inject
echo "rwb: counts end"
sync
echo "rwb: done"
reboot -f
