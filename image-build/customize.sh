#!/bin/sh
# mmdebstrap's last customize hook (imagebuild/build.py passes it): finishes the root tree in "$1" after every
# package, the gateway's venv and the overlay (image-build/rootfs) are in. Runs inside mmdebstrap's user namespace
# (root there, an unprivileged id outside), so `chroot` works and runs arm64 programs through qemu-user.
set -eu
root="$1"
in_root() { chroot "$root" "$@"; }

# The gateway's system user (systemd/gateway.sysusers.conf), now rather than at first boot, so that files the
# image ships for it can be given to it and every image has the same uid.
in_root systemd-sysusers
# The default configuration as gateway-import-config.service installs a user's: readable by the gateway, not by all
# (it may come to hold the API token).
in_root chgrp gateway /etc/gateway/gateway.toml
chmod 0640 "$root/etc/gateway/gateway.toml"

# What runs at boot. SSH stays off until first boot finds an authorized key (gateway-after-cloud-init.service turns it
# on); its host keys are made on first boot, so that no two gateways share them.
in_root systemctl enable gateway.service systemd-networkd.service systemd-resolved.service systemd-timesyncd.service
in_root systemctl disable ssh.service >/dev/null 2>&1 || true
in_root systemctl mask ssh.socket >/dev/null 2>&1 || true
rm -f "$root"/etc/ssh/ssh_host_*

# The gateway answers mDNS itself (gateway/discovery): resolved must not answer for the same name on port 5353.
mkdir -p "$root/etc/systemd/resolved.conf.d"
printf '[Resolve]\nMulticastDNS=no\nLLMNR=no\n' >"$root/etc/systemd/resolved.conf.d/gateway.conf"

# netplan warns about (and Wi-Fi secrets must not be in) files that others can read; git cannot keep 0600.
chmod 0600 "$root"/etc/netplan/*.yaml

# The host name until cloud-init sets the one chosen in Raspberry Pi Imager; the mDNS name follows it.
echo gateway >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tgateway\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

# raspi-firmware writes config.txt and cmdline.txt from these when the initramfs is built below. Guessed in a chroot,
# ROOTPART and CONSOLES come out wrong; CMA=64M is its default, and a 64 MB pool a headless gateway never uses
# (it can even stop a Pi 4 from booting). The console stays off the UART, which serial radios use.
cat >"$root/etc/default/raspi-firmware" <<'EOF'
# Written by the gateway's image build (image-build/customize.sh).
ROOTPART="LABEL=gwroot"
CONSOLES="tty0"
CMA=0
EOF

# One initramfs, built once, with the modules that find the root file system on the boards the image is for (SD,
# USB and NVMe) and under QEMU's virt machine (the boot test). `MODULES=most` would take four times as long.
cat >"$root/etc/initramfs-tools/conf.d/gateway.conf" <<'EOF'
MODULES=list
COMPRESS=zstd
EOF
cat >"$root/etc/initramfs-tools/modules" <<'EOF'
ext4
vfat
nls_cp437
nls_ascii
mmc_block
sdhci_iproc
sdhci_of_arasan
bcm2835
bcm2835_dma
usb_storage
uas
xhci_pci
xhci_plat_hcd
dwc2
pcie_brcmstb
reset_raspberrypi
nvme
virtio_pci
virtio_mmio
virtio_blk
EOF
# The diversion build.py set up before the packages came in (so that each kernel and firmware package did not
# rebuild the initramfs under emulation), undone now.
rm -f "$root/usr/sbin/update-initramfs"
in_root dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
in_root update-initramfs -c -k all

# Every gateway gets its own machine id at first boot; nothing of the build machine's apt state stays behind.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
rm -rf "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/*
