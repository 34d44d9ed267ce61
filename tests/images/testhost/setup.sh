# Runs inside the fresh root file system (chroot) before it is imported.
set -eu
# Units that cannot work in a container: kernel modules are the host's, and
# there is no console to log in on.
for unit in systemd-modules-load.service getty.target console-getty.service \
            systemd-firstboot.service systemd-udevd.service systemd-udev-trigger.service; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done
# A machine id is generated on first boot of each container.
: >/etc/machine-id
# Keep the image small: apt lists and caches are fetched again by the roles.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
# Mark the (empty) package lists as stale, so that `cache_valid_time` in the
# roles triggers an update on first use, as on a host that was never updated.
touch -d @0 /var/lib/apt/lists
