#!/bin/sh
# bench/vm.sh [bench options]: runs the benchmark in a throwaway virtual machine, for a figure that
# the machine's own limits forbid. 50,000 idle connections need a file-descriptor limit above
# 100,000 (the server and the load generator each hold one a connection); a container whose hard
# limit is lower, and that lacks CAP_SYS_RESOURCE to raise it, cannot run them. The VM boots Debian's
# kernel on this machine's own root filesystem, shared over 9p, so it runs the same Node and the same
# checkout; there, root raises the limit. Emulated (no KVM needed), so only memory figures mean
# anything. Needs root and: apt-get install -y qemu-system-x86 linux-image-amd64 busybox-static
#   bench/vm.sh --workloads=idle-50000 --idle=50000
set -eu
cd "$(dirname "$0")/.."
checkout=$(pwd)
kernel=$(ls /boot/vmlinuz-* | sort -V | tail -n 1)
release=${kernel#/boot/vmlinuz-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

node_modules/.bin/tsc -p bench/tsconfig.json

# an initramfs: busybox, the modules a 9p root needs, and an init that mounts it and runs the bench
mkdir -p "$work/root/bin" "$work/root/proc" "$work/root/dev" "$work/root/host"
cp /bin/busybox "$work/root/bin/"
modules=$(for module in virtio_pci 9pnet_virtio 9p; do
  modprobe -S "$release" --show-depends "$module"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }')
for module in $modules; do
  cp "$module" "$work/root/"
  basename "$module" >>"$work/root/modules"
done
cat >"$work/root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for module in \$(cat /modules); do insmod /\$module; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 host /host
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
chroot /host /bin/sh -c 'ip link set lo up && ulimit -n 200000 && cd "$checkout" &&
  PATH="$checkout/node_modules/.bin:\$PATH" node bench/.build/bench/run.js $*; echo \$? >"$work/status"'
poweroff -f
EOF
chmod +x "$work/root/init"
(cd "$work/root" && find . | cpio -o -H newc --quiet | gzip) >"$work/initrd.gz"

qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 8G -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initrd.gz" -append 'console=ttyS0 quiet panic=-1' \
  -virtfs "local,path=/,mount_tag=host,security_model=passthrough,multidevs=remap,id=host"
exit "$(cat "$work/status" 2>/dev/null || echo 1)"
